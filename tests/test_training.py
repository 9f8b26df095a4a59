"""Training: cached features equal full-model fitting, determinism, resume, saved models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import schema_defaults, training_settings
from cxr.architectures import DEFAULT_ARCHITECTURES
from cxr.errors import ConfigError, CxrError

SIZE = 32
MOBILENET = DEFAULT_ARCHITECTURES["MobileNet"]


def shard_dataset(n: int, seed: int, size: int = SIZE):
    """Elements as cxr.shards yields them; disease images (label 1) are brighter."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    images = rng.integers(0, 120, size=(n, size, size, 1)) + 100 * labels[:, None, None, None]
    return tf.data.Dataset.from_tensor_slices(
        {
            "image": images.astype(np.uint8),
            "label": labels,
            "id": [f"img{seed}-{i}" for i in range(n)],
            "patient": [f"p{i}" for i in range(n)],
            "source": ["synthetic"] * n,
            "sha256": ["0" * 64] * n,
        }
    )


def settings(**changes):
    """Small, fast settings; the others are the schema's defaults."""
    values = {"epochs": 4, "batch_size": 4, "dense_units": 8, "dropout": 0.5, "seed": 3}
    return training_settings(**{**values, **changes})


def run(out_dir, arch=MOBILENET, n_train=10, **kwargs):
    from cxr.training import train

    options = {"image_size": SIZE, "weights": None, "out_dir": out_dir}
    options.update({k: kwargs.pop(k) for k in ("strategy", "callbacks") if k in kwargs})
    return train(
        arch, shard_dataset(n_train, 0), shard_dataset(6, 1), settings(**kwargs), **options
    )


def saved_weights(path):
    import keras

    return keras.models.load_model(path).get_weights()


def same_weights(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    return out, run(out)


# --------------------------------------------------------------------------- cheap checks


def test_settings_validation():
    with pytest.raises(ConfigError, match="train.epochs"):
        settings(epochs=0)
    with pytest.raises(ConfigError, match="train.dropout"):
        settings(dropout=1.0)
    assert settings(fine_tune_layers=5, fine_tune_epochs=2).fine_tune
    assert not settings(fine_tune_layers=5).fine_tune


def test_settings_are_the_configs_with_no_defaults_of_their_own():
    from cxr.heads import TrainSettings

    training = schema_defaults()["training"]
    settings = TrainSettings.from_config(training, seed=7)
    same = ("epochs", "batch_size", "learning_rate", "dropout", "dense_units", "pool_size")
    assert {key: getattr(settings, key) for key in same} == {key: training[key] for key in same}
    assert settings.seed == 7 and not settings.augmentation and not settings.fine_tune
    assert settings.fine_tune_epochs == 0  # fine_tune.epochs counts only with fine_tune.layers
    with pytest.raises(TypeError, match="missing"):  # the schema's are the only defaults
        TrainSettings(epochs=3)


def test_require_gpu():
    import platform

    from cxr.runtime import require_gpu

    with pytest.raises(CxrError, match="sees none") as caught:
        require_gpu({"devices": {"cpu": ["/physical_device:CPU:0"], "gpu": []}})
    assert platform.node() in str(caught.value) and "CPU:0" in str(caught.value)
    require_gpu({"cpu": [], "gpu": ["/physical_device:GPU:0"]})


def test_configure_tensorflow_reports_environment(monkeypatch):
    import keras
    import tensorflow as tf

    from cxr.runtime import configure_tensorflow

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    info = configure_tensorflow(2)
    assert info["tensorflow"] == tf.__version__ and info["keras"] == keras.__version__
    assert info["devices"]["cpu"] and info["op_determinism"] is True
    assert info["threads"]["requested"] == 2 and info["TF_ENABLE_ONEDNN_OPTS"] == "1"


def test_cached_features_refused_when_images_change(tmp_path):
    with pytest.raises(ConfigError, match="cached features"):
        run(tmp_path, strategy="cached-features", augmentation=True)


# --------------------------------------------------------------------------- TensorFlow runs


@pytest.mark.slow
def test_cached_features_equal_full_model_fit(tmp_path):
    """docs/facts.md on a tiny case: random ResNet50 (no collapse), shuffling, dropout 0.5."""
    arch = DEFAULT_ARCHITECTURES["ResNet50"]
    kwargs = {"arch": arch, "n_train": 12, "epochs": 3}
    full = run(tmp_path / "full", strategy="full-model", **kwargs)
    cached = run(tmp_path / "cached", **kwargs)
    assert (full["path"], cached["path"]) == ("full-model", "cached-features")
    weights = [saved_weights(tmp_path / name / "model.keras") for name in ("full", "cached")]
    assert same_weights(*weights)
    history = [pd.read_csv(tmp_path / name / "history.csv") for name in ("full", "cached")]
    pd.testing.assert_frame_equal(*history, check_exact=True)
    # The head did learn something: its weights moved from their seeded initial values.
    assert history[0]["loss"].iloc[-1] != history[0]["loss"].iloc[0]


@pytest.mark.slow
def test_outputs_load_and_predict(reference):
    import keras

    from cxr.models import preprocess

    out, summary = reference
    assert summary["path"] == "cached-features" and summary["epochs_run"] == 4
    assert summary["batchnorm_recalibrated_layers"] == 27
    assert not (out / "backup").exists()
    assert sorted(p.name for p in out.iterdir()) == ["best.keras", "history.csv", "model.keras"]
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert summary["best_epoch"] == int(history.loc[history["val_loss"].idxmin(), "epoch"])
    images = np.stack([e["image"] for e in shard_dataset(5, 7).as_numpy_iterator()])
    for name in ("model.keras", "best.keras"):
        model = keras.models.load_model(out / name)
        probs = model.predict(preprocess(MOBILENET, images, SIZE), verbose=0)
        assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-6)


@pytest.mark.slow
def test_same_seed_same_weights(reference, tmp_path):
    out, _ = reference
    run(tmp_path)
    for name in ("model.keras", "best.keras"):
        assert same_weights(saved_weights(out / name), saved_weights(tmp_path / name))
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "history.csv"), pd.read_csv(tmp_path / "history.csv"), check_exact=True
    )


class Interrupt(Exception):
    pass


def stop_at_epoch(epoch: int):
    """A Keras callback that kills the run before the given (1-based) epoch starts."""
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index + 1 == epoch:
                raise Interrupt

    return Stop()


def test_callbacks_are_refused_where_no_epoch_loop_calls_them(tmp_path):
    with pytest.raises(ConfigError, match="whole-model route only"):
        run(tmp_path, callbacks=[stop_at_epoch(3)])


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(reference, tmp_path):
    """The whole-model route (per-epoch state) resumes; the reference is the head fitted on
    cached features, which the whole model equals (test_cached_features_equal_full_model_fit)."""
    with pytest.raises(Interrupt):
        run(tmp_path, strategy="full-model", callbacks=[stop_at_epoch(3)])  # epochs 1, 2 done
    assert not (tmp_path / "model.keras").exists()
    assert (tmp_path / "backup" / "state.json").is_file()

    summary = run(tmp_path, strategy="full-model")
    assert summary["resumed_from_epoch"] == 2 and summary["epochs_run"] == 4
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [1, 2, 3, 4]
    assert not (tmp_path / "backup").exists()
    # Dropout RNG and batch order are restored too: the result equals the uninterrupted run.
    out, _ = reference
    assert same_weights(saved_weights(out / "model.keras"), saved_weights(tmp_path / "model.keras"))


@pytest.mark.slow
def test_fine_tuning_with_augmentation_resumes_between_stages(tmp_path):
    kwargs = {"epochs": 1, "augmentation": True, "fine_tune_layers": 3, "fine_tune_epochs": 1}
    summary = run(tmp_path / "whole", **kwargs)
    assert summary["path"] == "full-model" and summary["epochs"] == 2
    assert pd.read_csv(tmp_path / "whole" / "history.csv")["epoch"].tolist() == [1, 2]
    # Killed after the head stage, resumed into the fine-tuning stage: same result.
    with pytest.raises(Interrupt):
        run(tmp_path / "resumed", callbacks=[stop_at_epoch(2)], **kwargs)
    assert run(tmp_path / "resumed", **kwargs)["resumed_from_epoch"] == 1
    weights = [saved_weights(tmp_path / name / "model.keras") for name in ("whole", "resumed")]
    assert same_weights(*weights)
    import keras

    base = keras.models.load_model(tmp_path / "whole" / "model.keras").layers[1]
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["conv_pw_13"]  # the top 3 layers minus BatchNorm (and the ReLU)


@pytest.mark.slow
def test_extract_features_keeps_order():
    import keras

    from cxr.models import build_base
    from cxr.training import extract_features

    keras.utils.set_random_seed(0)
    base = build_base(MOBILENET, SIZE, None)
    features, labels, ids = extract_features(
        base, MOBILENET, shard_dataset(5, 2, size=48), image_size=SIZE, batch_size=2
    )
    assert features.shape == (5, 1, 1, 1024) and features.dtype == np.float32
    assert labels.tolist() == [0, 1, 0, 1, 0] and ids[0] == "img2-0"
