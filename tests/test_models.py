"""Architecture registry, preprocessing, the head, and BatchNorm recalibration."""

from __future__ import annotations

import numpy as np
import pytest

from cxr.architectures import (
    DEFAULT_ARCHITECTURES,
    Architecture,
    check_image_size,
    resolve_architectures,
)
from cxr.errors import ConfigError, DataError


def gray_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 1), dtype=np.uint8)


# --------------------------------------------------------------------------- registry


def test_article_architectures_resolve_in_order():
    archs = resolve_architectures(["DenseNet121", "MobileNet", "ResNet50"])
    assert [a.name for a in archs] == ["DenseNet121", "MobileNet", "ResNet50"]
    assert archs[2] == Architecture("ResNet50", "ResNet50", "resnet50", 32)


def test_every_default_exists_in_keras():
    assert len(resolve_architectures(list(DEFAULT_ARCHITECTURES))) == 6


def test_extra_architecture_from_config():
    extra = {
        "Xception": {"application": "Xception", "preprocess_module": "xception", "min_size": 71}
    }
    (arch,) = resolve_architectures(["Xception"], extra)
    assert arch == Architecture("Xception", "Xception", "xception", 71)
    assert callable(arch.constructor()) and callable(arch.preprocess_input())


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError, match=r"'Foo'.*DenseNet121, EfficientNetB0, MobileNet"):
        resolve_architectures(["MobileNet", "Foo"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"application": "NoSuchNet", "preprocess_module": "resnet50"}, "no model 'NoSuchNet'"),
        ({"application": "ResNet50", "preprocess_module": "nope"}, "nope has no preprocess_input"),
        ({"application": "ResNet50"}, "'preprocess_module' is missing"),
        ({"application": "ResNet50", "preprocess_module": "resnet50", "size": 3}, "unknown key"),
    ],
)
def test_bad_extra_architecture(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_architectures(["Mine"], {"Mine": spec})


def test_empty_and_duplicate_lists():
    with pytest.raises(ConfigError, match="empty"):
        resolve_architectures([])
    with pytest.raises(ConfigError, match="'MobileNet' is listed twice"):
        resolve_architectures(["MobileNet", "MobileNet"])


def test_image_size_below_minimum():
    arch = DEFAULT_ARCHITECTURES["MobileNet"]
    check_image_size(arch, 32)
    with pytest.raises(ConfigError, match="image size 31 is too small for MobileNet"):
        check_image_size(arch, 31)


# --------------------------------------------------------------------------- preprocessing, head


def test_preprocess_batch_to_model_size():
    from cxr.models import preprocess

    images = gray_images(3, 40)
    images[0] = 0
    images[1] = 255
    x = preprocess(DEFAULT_ARCHITECTURES["MobileNet"], images, 32)
    assert x.dtype == np.float32 and x.shape == (3, 32, 32, 3)
    # MobileNet scales [0, 255] to [-1, 1]; grayscale goes to all three channels.
    assert np.all(x[0] == -1) and np.all(x[1] == 1)
    assert np.array_equal(x[2, ..., 0], x[2, ..., 2])


def test_preprocess_single_image_uses_architecture_scaling():
    from cxr.models import preprocess

    image = np.full((32, 32, 1), 100, dtype=np.uint8)
    x = preprocess(DEFAULT_ARCHITECTURES["ResNet50"], image)
    assert x.shape == (32, 32, 3)
    # caffe mode: BGR order, ImageNet channel means subtracted.
    assert np.allclose(x[0, 0], [100 - 103.939, 100 - 116.779, 100 - 123.68])


def test_preprocess_rejects_rgb():
    from cxr.models import preprocess

    with pytest.raises(DataError, match="grayscale"):
        preprocess(DEFAULT_ARCHITECTURES["MobileNet"], np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.parametrize(("side", "pooled"), [(1, 1), (2, 1), (7, 1), (9, 2)])
def test_head_clamps_pool_to_feature_map(side, pooled):
    from cxr.models import build_head

    # The article's 4x4 pool, clamped to the map: pooled is floor(side / min(4, side)).
    head = build_head((side, side, 16), pool_size=4, dense_units=8, dropout=0.5)
    assert head.get_layer("head_pool").output.shape == (None, pooled, pooled, 16)
    assert head.output.shape == (None, 2)
    probs = np.asarray(head(np.ones((5, side, side, 16), np.float32)))
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1)
    assert [layer.__class__.__name__ for layer in head.layers[1:]] == [
        "AveragePooling2D",
        "Flatten",
        "Dropout",
        "Dense",
        "Dense",
    ]


def test_build_base_never_downloads(tmp_path):
    from cxr.models import build_base

    arch = DEFAULT_ARCHITECTURES["MobileNet"]
    with pytest.raises(ConfigError, match="download"):
        build_base(arch, 32, "imagenet")
    with pytest.raises(DataError, match="not found"):
        build_base(arch, 32, tmp_path / "missing.h5")
    with pytest.raises(ConfigError, match="too small"):
        build_base(arch, 16, None)


# --------------------------------------------------------------------------- TensorFlow models


@pytest.mark.slow
def test_build_base_loads_local_weights_file(tmp_path):
    import keras

    from cxr.models import build_base

    arch = DEFAULT_ARCHITECTURES["MobileNet"]
    keras.utils.set_random_seed(1)
    saved = build_base(arch, 32, None)
    saved.save_weights(tmp_path / "base.weights.h5")
    keras.utils.set_random_seed(2)
    loaded = build_base(arch, 32, tmp_path / "base.weights.h5")
    assert loaded.output.shape == (None, 1, 1, 1024)
    pairs = zip(saved.get_weights(), loaded.get_weights(), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)


@pytest.mark.slow
def test_recalibration_revives_random_mobilenet():
    import keras

    from cxr.models import build_base, preprocess, recalibrate_batchnorm

    arch = DEFAULT_ARCHITECTURES["MobileNet"]
    x = preprocess(arch, gray_images(12, 32), 32)

    def recalibrated_features():
        keras.utils.set_random_seed(0)
        base = build_base(arch, 32, None)
        before = np.asarray(base.predict_on_batch(x))
        assert recalibrate_batchnorm(base, x, batch_size=5) == 27
        return base, before, np.asarray(base.predict_on_batch(x))

    base, before, after = recalibrated_features()
    # Moving stats 0/1 match no activation: the features collapse (docs/facts.md: ~1e-20).
    assert before.std() < 1e-10
    assert after.std() > 1e-3 and np.isfinite(after).all()
    # Trainable flags and momenta are restored; the result is deterministic.
    assert all(layer.trainable for layer in base.layers)
    assert base.get_layer("conv1_bn").momentum == pytest.approx(0.99)
    _, _, again = recalibrated_features()
    assert np.array_equal(after, again)


@pytest.mark.slow
def test_recalibration_sets_exact_statistics_of_first_batchnorm():
    import keras

    from cxr.models import recalibrate_batchnorm

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    bn = keras.layers.BatchNormalization()
    model = keras.Model(inputs, bn(inputs))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(10, 4, 4, 3)).astype(np.float32)
    # Batches of 4, 3, 3: pooled moments must equal those over all 10 images.
    recalibrate_batchnorm(model, x, batch_size=4)
    assert np.allclose(bn.moving_mean.numpy(), x.mean(axis=(0, 1, 2)), atol=1e-5)
    assert np.allclose(bn.moving_variance.numpy(), x.var(axis=(0, 1, 2)), atol=1e-4)
