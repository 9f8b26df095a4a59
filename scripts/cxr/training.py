"""Models on images for one architecture: the frozen base every run shares (prepare_base), its
features (base_features), and base + head fitted on the images (train: the route of
augmentation and fine-tuning, or on features the base gives once when nothing changes its input
or weights). The head, its settings and its fit on stored features are cxr.heads.

How a fit resumes and what it writes is cxr.fitting; TensorFlow's setup is cxr.runtime.
TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, and this module imports it: the entry
point sets it first (cxr.logs.run_tensorflow_job).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from cxr.architectures import Architecture, check_image_size
from cxr.errors import ConfigError, DataError
from cxr.fitting import Stage, fit_and_save, fit_facts, run_fingerprint
from cxr.heads import CompiledHead, TrainSettings, seeded_head, write_fit
from cxr.models import (
    all_layers,
    build_base,
    build_classifier,
    preprocess,
    recalibrate_batchnorm,
    to_rgb,
)
from cxr.runtime import dtype_policy, list_devices

logger = logging.getLogger(__name__)

STRATEGIES = ("auto", "cached-features", "full-model")
# Augmentation: random rotation within +-15 degrees, edges filled with the nearest pixel.
ROTATION_DEGREES = 15.0


# --------------------------------------------------------------------------- images and features


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


def base_features(
    base: keras.Model, arch: Architecture, images: np.ndarray, *, image_size: int, batch_size: int
) -> np.ndarray:
    """The base's float32 outputs for uint8 grayscale images [N,H,W,1], in batches."""
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
    features = base_features(base, arch, images, image_size=image_size, batch_size=batch_size)
    return features, labels, ids


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


# --------------------------------------------------------------------------- strategies


def _choose_strategy(strategy: str, settings: TrainSettings) -> str:
    if strategy not in STRATEGIES:
        raise ConfigError(f"training strategy must be one of {STRATEGIES}, got {strategy!r}")
    needs_images = bool(settings.augmentation) or settings.fine_tune
    if strategy == "cached-features" and needs_images:
        raise ConfigError("cached features need a frozen base without augmentation")
    return "full-model" if strategy == "full-model" or needs_images else "cached-features"


def _check_callbacks(chosen: str, callbacks: list | None) -> None:
    # Keras callbacks run per epoch of model.fit, which the head's traced fit does not call.
    if callbacks and chosen != "full-model":
        raise ConfigError("callbacks run in the whole-model route only: pass strategy='full-model'")


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
        f_train = base_features(base, arch, x_train, image_size=image_size, batch_size=bs)
        f_val = base_features(base, arch, x_val, image_size=image_size, batch_size=bs)
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


def _unfreeze_top(base: keras.Model, count: int) -> None:
    """Unfreeze the top `count` layers of the base; BatchNorm layers stay frozen."""
    base.trainable = True
    for layer in base.layers[:-count]:
        layer.trainable = False
    for layer in all_layers(base):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def plan_stages(settings: TrainSettings, base: keras.Model | None) -> list[Stage]:
    """The head's stage, then, with fine-tuning, the stage that unfreezes the top of `base`."""
    stages = [Stage(settings.epochs, settings.learning_rate)]
    if settings.fine_tune:
        stages.append(
            Stage(
                settings.epochs + settings.fine_tune_epochs,
                settings.fine_tune_learning_rate,
                lambda: _unfreeze_top(base, settings.fine_tune_layers),
            )
        )
    return stages


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


def train(
    arch: Architecture,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    settings: TrainSettings,
    *,
    image_size: int,
    weights: str | Path | None,
    out_dir: Path,
    strategy: str = "auto",
    callbacks: list | None = None,
    base: keras.Model | None = None,
) -> dict[str, Any]:
    """Train base + head on images; write model.keras (last epoch), best.keras (lowest val
    loss) and history.csv to `out_dir`; return a JSON-safe summary.

    strategy "auto" runs the frozen base once and fits the head on the cached features when
    nothing changes the base's input or weights (no augmentation, no fine-tuning): the same
    head weights, bit for bit, as fitting the whole model (docs/facts.md), 10-20x faster.
    "full-model" forces fitting on images (for checks); a killed full-model run resumes from
    its last epoch when rerun with the same out_dir (a head on cached features is fitted
    again: cxr.heads). `base`: a prepared base (prepare_base) to start
    from instead of building one; `callbacks`: extra Keras callbacks (tests). The summary
    names the strategy used under "path" (a key of the run's output files).
    """
    chosen = _choose_strategy(strategy, settings)
    _check_callbacks(chosen, callbacks)
    check_image_size(arch, image_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bs = settings.batch_size

    x_train, y_train, train_ids = _load_arrays(train_ds, "training")
    x_val, y_val, val_ids = _load_arrays(val_ds, "validation")
    fingerprint = run_fingerprint(
        arch=dataclasses.asdict(arch),
        settings=dataclasses.asdict(settings),
        image_size=image_size,
        weights=weights,
        path=chosen,  # the key "path" keeps the fingerprints of earlier runs valid
        given_base=base is not None,
        train=train_ids,
        val=val_ids,
    )
    logger.info(
        "%s at %d px, %s weights, %d training / %d validation images, strategy %s",
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
                arch,
                x_train,
                image_size=image_size,
                weights=weights,
                seed=settings.seed,
                batch_size=bs,
            )
        batches = _batch_makers(
            chosen, base, arch, {"x_train": x_train, "x_val": x_val}, image_size, settings
        )
        # BatchNorm recalibration (random weights) plus, with cached features, the base's one run.
        seconds_features = time.perf_counter() - started
        logger.info("base ready for fitting in %.1f s", seconds_features)

        stages = plan_stages(settings, base)
        if chosen == "cached-features":
            # The one route of a head on stored features (cxr.heads), saved inside the
            # classifier: nothing to resume, a killed run fits the head again.
            make_x, make_val, _ = batches
            head = CompiledHead(base.output_shape[1:], settings)
            fit = head.fit(
                (make_x(np.arange(len(y_train)), 0, 0), y_train),
                (make_val(np.arange(len(y_val)), 0, 0), y_val),
                settings,
            )
            write_fit(fit, head.model, build_classifier(base, head.model), out_dir)
            facts, seconds_fit = fit.facts(stages[-1].end), fit.seconds
        else:
            classifier = build_classifier(base, seeded_head(base.output_shape[1:], settings))
            state, resumed_from, seconds_fit = fit_and_save(
                classifier,
                classifier,
                batches=batches,
                y_train=y_train,
                y_val=y_val,
                batch_size=settings.batch_size,
                seed=settings.seed,
                stages=stages,
                out_dir=out_dir,
                fingerprint=fingerprint,
                callbacks=callbacks,
            )
            facts = fit_facts(state, resumed_from, stages[-1].end)
    return {
        "architecture": arch.name,
        "path": chosen,
        "image_size": image_size,
        "weights": None if weights is None else str(weights),
        "batchnorm_recalibrated_layers": recalibrated,
        "n_train": len(y_train),
        "n_val": len(y_val),
        **facts,
        "seconds_features": round(seconds_features, 3),
        "seconds_fit": round(seconds_fit, 3),
        "mixed_precision": settings.mixed_precision,
        "devices": list_devices(),
    }
