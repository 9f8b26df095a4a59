"""Keras models: a frozen keras.applications base, the article's small classification head,
preprocessing of grayscale shards into each base's input, BatchNorm recalibration for
randomly initialised bases, and saving a model atomically."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from cxr.architectures import Architecture, check_image_size
from cxr.errors import ConfigError, DataError
from cxr.io import atomic_path


def build_base(arch: Architecture, image_size: int, weights: str | Path | None) -> keras.Model:
    """The convolutional base (include_top=False) for (s, s, 3) inputs, random or from a local
    .h5 file; never downloads ("imagenet" is refused: fetch the file first)."""
    check_image_size(arch, image_size)
    if weights is not None:
        if str(weights) == "imagenet":
            raise ConfigError(
                f"{arch.name}: weights 'imagenet' would download at training time; pass the "
                "local .h5 file fetched by the download rule, or None for random weights"
            )
        if not Path(weights).is_file():
            raise DataError(
                f"{arch.name}: weights file {weights} not found; run the rule that downloads "
                "the ImageNet weights first"
            )
        weights = str(weights)
    return arch.constructor()(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3)
    )


def to_rgb(images, image_size: int | None = None) -> tf.Tensor:
    """uint8 grayscale [N,H,W,1] or [H,W,1] -> float32 RGB in [0, 255], bilinearly resized."""
    x = tf.convert_to_tensor(images)
    if x.shape.rank not in (3, 4) or x.shape[-1] != 1:
        raise DataError(f"expected grayscale images [N,H,W,1] or [H,W,1], got shape {x.shape}")
    x = tf.cast(x, tf.float32)
    if image_size is not None and tuple(x.shape[-3:-1]) != (image_size, image_size):
        x = tf.image.resize(x, (image_size, image_size), method="bilinear")
    return tf.repeat(x, 3, axis=-1)


def preprocess(arch: Architecture, images, image_size: int | None = None) -> np.ndarray:
    """uint8 grayscale [N,H,W,1] or [H,W,1] -> float32 [..., s, s, 3] through the architecture's
    own preprocess_input (each model was trained on differently scaled inputs)."""
    x = arch.preprocess_input()(to_rgb(images, image_size))
    return np.asarray(x, dtype=np.float32)


def build_head(
    feature_shape: tuple[int, ...],
    *,
    pool_size: int,
    dense_units: int,
    dropout: float,
    # Not a setting: config's `labels` are always two (positive, negative), y in {0, 1}.
    num_classes: int = 2,
) -> keras.Model:
    """The article's head: AveragePooling2D -> Flatten -> Dropout -> Dense(relu) -> softmax,
    sized by config's `training` settings (TrainSettings, whose defaults are the schema's)."""
    height, width = int(feature_shape[0]), int(feature_shape[1])
    # The article pools 4x4 on a 7x7 map (224 px inputs). Small images give 1x1 or 2x2 maps,
    # on which a 4x4 pool cannot run, so the pool is clamped to the map.
    pool = (min(pool_size, height), min(pool_size, width))
    inputs = keras.Input(tuple(feature_shape), name="features")
    x = keras.layers.AveragePooling2D(pool_size=pool, name="head_pool")(inputs)
    x = keras.layers.Flatten(name="head_flatten")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    # float32 output even under a mixed-precision policy, so the softmax and loss stay stable.
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="head_output"
    )(x)
    return keras.Model(inputs, outputs, name="head")


def build_classifier(base: keras.Model, head: keras.Model) -> keras.Model:
    """base + head on preprocessed images; the base is frozen (fine-tuning unfreezes it later)."""
    base.trainable = False
    inputs = keras.Input(base.input_shape[1:], name="image")
    # training=False keeps BatchNorm in inference mode even when layers are unfrozen for
    # fine-tuning, as the Keras transfer-learning guide recommends.
    outputs = head(base(inputs, training=False))
    return keras.Model(inputs, outputs, name=f"{base.name}_classifier")


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save `model` as a .keras file; a killed job never leaves a half-written one at `path`."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model`, nested models included, parents before their children."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def _batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [x for x in all_layers(model) if isinstance(x, keras.layers.BatchNormalization)]


def _batches(images: np.ndarray | Iterable[np.ndarray], batch_size: int) -> Iterable[np.ndarray]:
    if not isinstance(images, np.ndarray):
        return images
    # Near-equal batches (sizes differ by at most one): a trailing batch of one image would
    # have zero variance everywhere.
    return np.array_split(images, max(1, int(np.ceil(len(images) / batch_size))))


def recalibrate_batchnorm(
    base: keras.Model, images_preprocessed: np.ndarray | Iterable[np.ndarray], batch_size: int
) -> int:
    """Set every BatchNorm layer's moving mean/variance to the statistics of these images.

    A randomly initialised base has moving mean 0 / variance 1, which match none of its
    activations: in inference mode the features shrink layer after layer (MobileNet reaches
    ~1e-20) and a head trained on them learns nothing. Like "PreciseBN" (Wu & Johnson 2021)
    we run the images once in training mode, where each BN normalises with its batch
    statistics, and set the moving statistics to the exact pooled mean and variance over all
    batches. Deterministic: no momentum blending, fixed batch order. Returns the layer count.
    """
    layers = _batchnorm_layers(base)
    if not layers:
        return 0
    # Parents first: restoring a model's flag resets its children, which are restored after it.
    trainable = [(layer, layer.trainable) for layer in [base, *all_layers(base)]]
    momentum = [layer.momentum for layer in layers]
    # Keras runs BN in inference mode when it is not trainable, whatever `training` says.
    base.trainable = True
    for layer in layers:
        # Momentum 0: after each batch the moving statistics ARE that batch's statistics.
        layer.momentum = 0.0
    # One trace for every batch size (batches differ by one image).
    spec = tf.TensorSpec((None, *base.input_shape[1:]), tf.float32)
    step = tf.function(lambda x: base(x, training=True), input_signature=[spec])
    count = 0
    sums = [None] * len(layers)
    try:
        for batch in _batches(images_preprocessed, batch_size):
            n = len(batch)
            if n == 0:
                continue
            step(tf.convert_to_tensor(batch, dtype=tf.float32))
            for i, layer in enumerate(layers):
                mean = np.asarray(layer.moving_mean, dtype=np.float64)
                var = np.asarray(layer.moving_variance, dtype=np.float64)
                # Pool per-batch moments into the moments of all images (law of total variance).
                moments = np.stack([n * mean, n * (var + mean**2)])
                sums[i] = moments if sums[i] is None else sums[i] + moments
            count += n
        if count == 0:
            raise DataError("BatchNorm recalibration got no images")
        for layer, total in zip(layers, sums, strict=True):
            mean = total[0] / count
            var = np.maximum(total[1] / count - mean**2, 0.0)
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(var.astype(np.float32))
    finally:
        for layer, value in zip(layers, momentum, strict=True):
            layer.momentum = value
        for layer, value in trainable:
            layer.trainable = value
    return len(layers)
