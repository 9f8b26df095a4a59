"""Train one architecture: frozen base + the article's head, resumable and reproducible.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, and this module imports it: see
cxr.runtime.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from cxr.architectures import Architecture, check_image_size
from cxr.errors import ConfigError, DataError
from cxr.io import atomic_open, read_json, write_csv, write_json
from cxr.models import (
    all_layers,
    build_base,
    build_classifier,
    build_head,
    preprocess,
    recalibrate_batchnorm,
    to_rgb,
)
from cxr.runtime import dtype_policy, list_devices

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
PATHS = ("auto", "cached-features", "full-model")
# Augmentation: random rotation within +-15 degrees, edges filled with the nearest pixel.
ROTATION_DEGREES = 15.0
_LOSS = "sparse_categorical_crossentropy"  # labels are class indices: 1 = disease, 0 = healthy


# --------------------------------------------------------------------------- data


def _load_arrays(dataset: tf.data.Dataset, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Materialise a shard dataset: uint8 images [N,H,W,1], int64 labels, ids."""
    images, labels, ids = [], [], []
    for batch in dataset.batch(256).as_numpy_iterator():
        images.append(batch["image"])
        labels.append(batch["label"])
        ids.extend(value.decode() for value in batch["id"])
    if not images:
        raise DataError(f"the {what} set is empty: check the split and the shards")
    label_array = np.concatenate(labels).astype(np.int64)
    unexpected = sorted(set(np.unique(label_array).tolist()) - {0, 1})
    if unexpected:
        raise DataError(f"the {what} set has labels {unexpected}; expected 0 (healthy), 1")
    return np.concatenate(images), label_array, ids


def _features(
    base: keras.Model, arch: Architecture, images: np.ndarray, image_size: int, batch_size: int
) -> np.ndarray:
    chunks = [
        np.asarray(
            base.predict_on_batch(preprocess(arch, images[i : i + batch_size], image_size)),
            dtype=np.float32,
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(chunks)


def extract_features(
    base: keras.Model,
    arch: Architecture,
    dataset: tf.data.Dataset,
    *,
    image_size: int,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Run the (frozen) base once over a shard dataset: float32 features, labels, ids."""
    images, labels, ids = _load_arrays(dataset, "input")
    return _features(base, arch, images, image_size, batch_size), labels, ids


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    # A function of (seed, epoch) alone, so a resumed run sees the batches it would have seen
    # uninterrupted, and both training paths see the same batches.
    return np.random.default_rng([seed, epoch]).permutation(n)


def _rotate(rgb: tf.Tensor, rng: np.random.Generator) -> tf.Tensor:
    """Rotate each image by a random angle about its centre (float images [N,s,s,3])."""
    n, height, width = int(rgb.shape[0]), int(rgb.shape[1]), int(rgb.shape[2])
    angle = np.deg2rad(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES, size=n))
    cos, sin = np.cos(angle), np.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Each row maps an output pixel (x, y) to the input point c + R (p - c).
    transform = np.stack(
        [cos, -sin, cx - cos * cx + sin * cy, sin, cos, cy - sin * cx - cos * cy]
        + [np.zeros(n)] * 2,
        axis=1,
    ).astype(np.float32)
    return keras.ops.image.affine_transform(rgb, transform, fill_mode="nearest")


def _batch_dataset(
    make_x: Callable[[np.ndarray, int, int], np.ndarray],
    labels: np.ndarray,
    orders: Callable[[], Iterator[tuple[int, np.ndarray]]],
    batch_size: int,
    x_shape: tuple[int, ...],
    num_batches: int | None = None,
) -> tf.data.Dataset:
    """(x, y) batches in the index orders `orders()` yields per epoch, x made on demand."""

    def generate():
        for epoch, order in orders():
            for number, start in enumerate(range(0, len(order), batch_size)):
                index = order[start : start + batch_size]
                yield make_x(index, epoch, number), labels[index]

    signature = (
        tf.TensorSpec((None, *x_shape), tf.float32),
        tf.TensorSpec((None,), tf.int64),
    )
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    if num_batches is not None:
        # A known length lets Keras stop without an "input ran out of data" warning.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    return dataset.prefetch(1)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainSettings:
    """Training hyper-parameters (config's `train` section). Epochs count from 1."""

    epochs: int = 25
    batch_size: int = 8
    learning_rate: float = 1e-3
    dropout: float = 0.5
    dense_units: int = 64
    pool_size: int = 4
    seed: int = 0
    augmentation: bool | None = None  # None (unset) = off
    fine_tune_layers: int = 0  # 0 = no fine-tuning stage
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    mixed_precision: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "dense_units", "pool_size", "learning_rate")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("fine_tune_layers", "fine_tune_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout!r}")
        if self.fine_tune and not self.fine_tune_learning_rate > 0:
            raise ConfigError("train.fine_tune_learning_rate must be > 0")

    @property
    def fine_tune(self) -> bool:
        return self.fine_tune_layers > 0 and self.fine_tune_epochs > 0


# --------------------------------------------------------------------------- checkpointing
# Hand-written instead of keras.callbacks.BackupAndRestore because that callback (Keras 3.15)
# writes its weights and epoch number non-atomically (a kill in between resumes from a wrong
# epoch), does not keep the Dropout RNG state (a resumed run diverges from an uninterrupted
# one), and knows nothing of the history rows and best epoch we must write at the end.
# Here each epoch writes its weight files first, then state.json (atomically) naming them.


def _rng_variables(model: keras.Model) -> list:
    # Dropout's SeedGenerator state: a model variable that save_weights does not store.
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _replace_via_tmp(path: Path, write: Callable[[Path], None]) -> None:
    # Keras picks the format from the suffix, so the temporary name keeps it.
    tmp = path.with_name(f".part-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _save_model(model: keras.Model, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace_via_tmp(path, lambda tmp: model.save(tmp))


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class _Checkpoint(keras.callbacks.Callback):
    """Per epoch: log, append the history row, keep the best weights, save resumable state."""

    def __init__(self, backup: Path, stage: int, state: dict, fingerprint: str, total: int):
        super().__init__()
        self.backup, self.stage, self.state = backup, stage, state
        self.fingerprint, self.total = fingerprint, total
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = epoch + 1
        row = {"epoch": done, **{key: _finite(logs[key]) for key in HISTORY_COLUMNS[1:]}}
        state = self.state
        state["rows"].append(row)
        best = state.get("best_val_loss")
        if state.get("best_epoch") is None or (
            row["val_loss"] is not None and (best is None or row["val_loss"] < best)
        ):
            name = f"best-{done}.npz"
            weights = self.model.get_weights()
            with atomic_open(self.backup / name, "wb") as handle:
                np.savez(handle, *weights)
            state.update(best_epoch=done, best_val_loss=row["val_loss"], best=name)
        name = f"epoch-{done}.weights.h5"
        _replace_via_tmp(self.backup / name, lambda tmp: self.model.save_weights(tmp))
        state.update(
            epoch=done,
            stage=self.stage,
            weights=name,
            fingerprint=self.fingerprint,
            rng=[v.numpy().tolist() for v in _rng_variables(self.model)],
        )
        write_json(self.backup / "state.json", state)
        for path in self.backup.iterdir():
            if path.name not in {"state.json", state["weights"], state["best"]}:
                path.unlink()
        logger.info(
            "epoch %d/%d: loss %s accuracy %s val_loss %s val_accuracy %s (%.1f s)",
            done,
            self.total,
            *(row[key] for key in HISTORY_COLUMNS[1:]),
            time.perf_counter() - self._started,
        )


def _read_state(backup: Path, fingerprint: str) -> dict | None:
    path = backup / "state.json"
    if not path.is_file():
        return None
    state = read_json(path)
    if state.get("fingerprint") != fingerprint:
        logger.warning("%s is from a different run (settings or data changed); starting over", path)
        shutil.rmtree(backup)
        return None
    logger.info("resuming from %s after epoch %d", path, state["epoch"])
    return state


def _restore(model: keras.Model, backup: Path, state: dict) -> None:
    model.optimizer.build(model.trainable_variables)
    model.load_weights(backup / state["weights"])
    for variable, value in zip(_rng_variables(model), state["rng"], strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))


def _load_best(model: keras.Model, backup: Path, state: dict) -> None:
    with np.load(backup / state["best"]) as stored:
        model.set_weights([stored[f"arr_{i}"] for i in range(len(stored.files))])


@dataclass
class _Stage:
    end: int  # epochs done when the stage ends
    learning_rate: float
    prepare: Callable[[], None] | None = None  # e.g. unfreeze layers


def _fit_stages(
    model: keras.Model,
    stages: list[_Stage],
    train_batches: Callable[[int, int], tf.data.Dataset],
    val_batches: tf.data.Dataset,
    steps: int,
    backup: Path,
    fingerprint: str,
    callbacks: list,
) -> tuple[dict, int]:
    """Fit stage after stage, resuming from `backup` if a previous run left state there."""
    state = _read_state(backup, fingerprint)
    start = state["epoch"] if state else 0
    state = state or {"rows": [], "best_epoch": None, "best_val_loss": None, "best": None}
    backup.mkdir(parents=True, exist_ok=True)
    begin = 0
    for number, stage in enumerate(stages):
        if stage.prepare is not None:
            stage.prepare()
        model.compile(
            optimizer=keras.optimizers.Adam(stage.learning_rate), loss=_LOSS, metrics=["accuracy"]
        )
        if state.get("stage") == number:
            _restore(model, backup, state)
        first, begin = max(start, begin), stage.end
        if first >= stage.end:
            continue
        model.fit(
            train_batches(first, stage.end),
            steps_per_epoch=steps,
            epochs=stage.end,
            initial_epoch=first,
            validation_data=val_batches,
            shuffle=False,  # the batches come in our own order (see _epoch_order)
            callbacks=[_Checkpoint(backup, number, state, fingerprint, stages[-1].end), *callbacks],
            verbose=0,
        )
    return state, start


def _unfreeze_top(base: keras.Model, count: int) -> None:
    """Unfreeze the top `count` layers of the base; BatchNorm layers stay frozen."""
    base.trainable = True
    for layer in base.layers[:-count]:
        layer.trainable = False
    for layer in all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _fingerprint(**values: Any) -> str:
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- training


def _choose_path(path: str, settings: TrainSettings) -> str:
    if path not in PATHS:
        raise ConfigError(f"training path must be one of {PATHS}, got {path!r}")
    needs_images = bool(settings.augmentation) or settings.fine_tune
    if path == "cached-features" and needs_images:
        raise ConfigError("cached features need a frozen base without augmentation")
    return "full-model" if path == "full-model" or needs_images else "cached-features"


def _batch_makers(
    chosen: str,
    base: keras.Model,
    arch: Architecture,
    data: dict[str, np.ndarray],
    image_size: int,
    settings: TrainSettings,
) -> tuple[Callable, Callable, tuple[int, ...]]:
    """make_x(index, epoch, batch number) for training and validation, and the x shape."""
    x_train, x_val, bs = data["x_train"], data["x_val"], settings.batch_size
    if chosen == "cached-features":
        f_train = _features(base, arch, x_train, image_size, bs)
        f_val = _features(base, arch, x_val, image_size, bs)
        return (lambda i, e, b: f_train[i]), (lambda i, e, b: f_val[i]), f_train.shape[1:]

    preprocess_input = arch.preprocess_input()

    def make_x(index, epoch, number):
        rgb = to_rgb(x_train[index], image_size)
        if settings.augmentation:
            rgb = _rotate(rgb, np.random.default_rng([settings.seed, epoch, number]))
        return np.asarray(preprocess_input(rgb), dtype=np.float32)

    def make_val(index, epoch, number):
        return preprocess(arch, x_val[index], image_size)

    return make_x, make_val, (image_size, image_size, 3)


def seeded_head(feature_shape: tuple, settings: TrainSettings) -> keras.Model:
    """The article's head, built right after `keras.utils.set_random_seed(settings.seed)`, so
    its initial weights and Dropout stream never depend on what consumed randomness before
    (the cached-feature equivalence needs this; docs/facts.md)."""
    keras.utils.set_random_seed(settings.seed)
    return build_head(
        feature_shape,
        pool_size=settings.pool_size,
        dense_units=settings.dense_units,
        dropout=settings.dropout,
    )


def prepare_base(
    arch: Architecture,
    images: np.ndarray,
    *,
    image_size: int,
    weights: str | Path | None,
    seed: int,
    batch_size: int,
) -> tuple[keras.Model, int]:
    """The frozen base every run of an architecture shares: ImageNet weights from a local file,
    or random weights drawn after `set_random_seed(seed)` with BatchNorm statistics recalibrated
    on `images` (uint8 [N,H,W,1]). Returns the base and the number of recalibrated layers."""
    keras.utils.set_random_seed(seed)
    base = build_base(arch, image_size, weights)
    if weights is not None:
        return base, 0
    # Near-equal chunks, as recalibrate_batchnorm makes from an array: no batch of one.
    chunks = np.array_split(images, max(1, math.ceil(len(images) / batch_size)))
    batches = (preprocess(arch, chunk, image_size) for chunk in chunks)
    return base, recalibrate_batchnorm(base, batches, batch_size)


def _stages(settings: TrainSettings, base: keras.Model | None) -> list[_Stage]:
    stages = [_Stage(settings.epochs, settings.learning_rate)]
    if settings.fine_tune:
        stages.append(
            _Stage(
                settings.epochs + settings.fine_tune_epochs,
                settings.fine_tune_learning_rate,
                lambda: _unfreeze_top(base, settings.fine_tune_layers),
            )
        )
    return stages


def _fit_and_save(
    model: keras.Model,
    saved: keras.Model,
    batches: tuple[Callable, Callable, tuple[int, ...]],
    y_train: np.ndarray,
    y_val: np.ndarray,
    settings: TrainSettings,
    stages: list[_Stage],
    out_dir: Path,
    fingerprint: str,
    callbacks: list | None,
) -> tuple[dict, int, float]:
    """Fit `model` (resumable from out_dir/backup), then write history.csv and `saved` as
    model.keras (last epoch) and best.keras (lowest validation loss)."""
    make_x, make_val, x_shape = batches
    bs, seed = settings.batch_size, settings.seed
    backup = out_dir / "backup"

    def train_batches(first: int, end: int) -> tf.data.Dataset:
        def orders():
            return ((e, _epoch_order(len(y_train), seed, e)) for e in range(first, end))

        return _batch_dataset(make_x, y_train, orders, bs, x_shape)

    def val_orders():
        return iter([(0, np.arange(len(y_val)))])

    val_batches = _batch_dataset(
        make_val, y_val, val_orders, bs, x_shape, math.ceil(len(y_val) / bs)
    )
    started = time.perf_counter()
    state, resumed_from = _fit_stages(
        model,
        stages,
        train_batches,
        val_batches,
        math.ceil(len(y_train) / bs),
        backup,
        fingerprint,
        list(callbacks or []),
    )
    seconds_fit = time.perf_counter() - started
    write_csv(out_dir / "history.csv", pd.DataFrame(state["rows"], columns=HISTORY_COLUMNS))
    _save_model(saved, out_dir / "model.keras")
    _load_best(model, backup, state)
    _save_model(saved, out_dir / "best.keras")
    shutil.rmtree(backup)
    return state, resumed_from, seconds_fit


def _fit_facts(state: dict, resumed_from: int, epochs: int) -> dict[str, Any]:
    return {
        "epochs": epochs,
        "epochs_run": len(state["rows"]),
        "resumed_from_epoch": resumed_from,
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val_loss"],
        "final": state["rows"][-1],
    }


def train_on_features(
    train: tuple[np.ndarray, np.ndarray, list[str]],
    val: tuple[np.ndarray, np.ndarray, list[str]],
    settings: TrainSettings,
    *,
    out_dir: Path,
    provenance: dict[str, Any],
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Fit the article's head on stored base features ((features, labels, ids) per split);
    write the head as model.keras / best.keras and history.csv to `out_dir`.

    The head on the shared frozen base is the whole classifier (cxr.models.build_classifier
    joins them), and fitting it on features gives the same weights as fitting base + head on
    the images (docs/facts.md). `provenance` (base file, architecture, ...) enters the resume
    fingerprint, so a run never resumes over another base."""
    if settings.augmentation or settings.fine_tune:
        raise ConfigError("stored features need a frozen base without augmentation")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (f_train, y_train, train_ids), (f_val, y_val, val_ids) = train, val
    for what, labels in (("training", y_train), ("validation", y_val)):
        if len(labels) == 0:
            raise DataError(f"the {what} set is empty: check the protocol's split")
    fingerprint = _fingerprint(
        settings=dataclasses.asdict(settings),
        provenance=provenance,
        path="stored-features",
        train=train_ids,
        val=val_ids,
    )
    logger.info(
        "head on stored features %s: %d training / %d validation images",
        f_train.shape[1:],
        len(y_train),
        len(y_val),
    )
    with dtype_policy(settings.mixed_precision):
        head = seeded_head(f_train.shape[1:], settings)
        batches = ((lambda i, e, b: f_train[i]), (lambda i, e, b: f_val[i]), f_train.shape[1:])
        state, resumed_from, seconds_fit = _fit_and_save(
            head, head, batches, y_train, y_val, settings, _stages(settings, None), out_dir,
            fingerprint, callbacks,
        )  # fmt: skip
    return {
        "path": "stored-features",
        "n_train": len(y_train),
        "n_val": len(y_val),
        **_fit_facts(state, resumed_from, settings.epochs),
        "seconds_fit": round(seconds_fit, 3),
        "mixed_precision": settings.mixed_precision,
        "devices": list_devices(),
    }


def train(
    arch: Architecture,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    settings: TrainSettings,
    *,
    image_size: int,
    weights: str | Path | None,
    out_dir: Path,
    path: str = "auto",
    callbacks: list | None = None,
    base: keras.Model | None = None,
) -> dict[str, Any]:
    """Train base + head on images; write model.keras (last epoch), best.keras (lowest val
    loss) and history.csv to `out_dir`; return a JSON-safe summary.

    path "auto" runs the frozen base once and fits the head on the cached features when
    nothing changes the base's input or weights (no augmentation, no fine-tuning): the same
    head weights, bit for bit, as fitting the whole model (docs/facts.md), 10-20x faster.
    "full-model" forces fitting on images (for checks). A killed run resumes from its last
    epoch when rerun with the same out_dir. `base`: a prepared base (prepare_base) to start
    from instead of building one; `callbacks`: extra Keras callbacks (tests).
    """
    chosen = _choose_path(path, settings)
    check_image_size(arch, image_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bs = settings.batch_size

    x_train, y_train, train_ids = _load_arrays(train_ds, "training")
    x_val, y_val, val_ids = _load_arrays(val_ds, "validation")
    fingerprint = _fingerprint(
        arch=dataclasses.asdict(arch),
        settings=dataclasses.asdict(settings),
        image_size=image_size,
        weights=weights,
        path=chosen,
        given_base=base is not None,
        train=train_ids,
        val=val_ids,
    )
    logger.info(
        "%s at %d px, %s weights, %d training / %d validation images, path %s",
        arch.name,
        image_size,
        "random" if weights is None else weights,
        len(y_train),
        len(y_val),
        chosen,
    )
    with dtype_policy(settings.mixed_precision):
        started = time.perf_counter()
        recalibrated = 0
        if base is None:
            base, recalibrated = prepare_base(
                arch, x_train, image_size=image_size, weights=weights, seed=settings.seed,
                batch_size=bs,
            )  # fmt: skip
        batches = _batch_makers(
            chosen, base, arch, {"x_train": x_train, "x_val": x_val}, image_size, settings
        )
        # BatchNorm recalibration (random weights) plus, on the fast path, the base's one run.
        seconds_features = time.perf_counter() - started
        logger.info("base ready for fitting in %.1f s", seconds_features)

        head = seeded_head(base.output_shape[1:], settings)
        classifier = build_classifier(base, head)
        model = head if chosen == "cached-features" else classifier
        stages = _stages(settings, base)
        state, resumed_from, seconds_fit = _fit_and_save(
            model, classifier, batches, y_train, y_val, settings, stages, out_dir, fingerprint,
            callbacks,
        )  # fmt: skip
    return {
        "architecture": arch.name,
        "path": chosen,
        "image_size": image_size,
        "weights": None if weights is None else str(weights),
        "batchnorm_recalibrated_layers": recalibrated,
        "n_train": len(y_train),
        "n_val": len(y_val),
        **_fit_facts(state, resumed_from, stages[-1].end),
        "seconds_features": round(seconds_features, 3),
        "seconds_fit": round(seconds_fit, 3),
        "mixed_precision": settings.mixed_precision,
        "devices": list_devices(),
    }
