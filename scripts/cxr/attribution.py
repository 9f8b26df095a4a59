"""Where a classifier looks: Grad-CAM on the base's last convolutional block, and occlusion
sensitivity as a model-agnostic cross-check, for the workflow's base + head classifiers.

Written here, with TensorFlow's GradientTape, because no maintained package does it for our
Keras 3 models (checked 2026-11): tf-keras-vis 0.8.7 (2024) and tf-explain 0.3.1 (2021) import
the Keras 2 API (`tensorflow.keras.backend`) and look for the layer in a flat model, not in the
nested base our classifiers are made of; iNNvestigate 2.1 needs TensorFlow 2.14 and Keras 2;
Captum is for PyTorch.

Both methods explain the class the model predicts (P(disease) >= threshold: disease, else
healthy), so a healthy call is explained by what made it healthy (a marker, say) as a disease
call is by what made it disease. Maps are returned at the image's resolution, non-negative
(evidence for the predicted class), with each method's own grid of cells for the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from cxr.errors import DataError

# Occluded pixels are set to mid-gray (uint8), before the architecture's preprocessing.
OCCLUSION_GRAY = 128
# Images per classifier call: as many pixels as 64 images at 224 px (what the maps of the
# article's size have run with in 6 GB), and at most 256 (at 64 px: 4 positions of 64 images).
PIXELS_PER_CALL = 64 * 224 * 224
MAX_IMAGES_PER_CALL = 256


@dataclass(frozen=True)
class Maps:
    """Attribution maps [N, H, W] at image resolution, the centre of each map's highest cell
    [N, 2] as (x, y) in [0, 1] image coordinates, and the method's grid of cells (rows,
    columns): the resolution the map really has."""

    maps: np.ndarray
    peaks: np.ndarray
    cells_shape: tuple[int, int]


def split_classifier(model: keras.Model, base: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(base, head) of a run's saved model: a head fitted on stored features runs on the shared
    base's output; a model trained on images (fine-tuning, augmentation) is build_classifier's
    Input -> base -> head and carries its own base. The base's output is its last convolutional
    block (include_top=False, no pooling: the head pools), the layer Grad-CAM asks for."""
    if tuple(model.input_shape[1:]) == tuple(base.output_shape[1:]):
        return base, model
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 2 or len(nested[0].output_shape) != 4:
        raise DataError(
            f"model {model.name}: expected a head on the base's features or base + head "
            f"(cxr.models.build_classifier), found layers {[x.name for x in model.layers]}"
        )
    return nested[0], nested[1]


def gradcam_layer(base: keras.Model, min_cells: int) -> keras.layers.Layer:
    """The layer Grad-CAM reads: the base's last layer with a 4-D output of at least
    `min_cells` cells per side. Grad-CAM asks for the last convolutional block, whose cells
    are the map's resolution; at 224 px that is the base's output (7x7), but at the embedded
    default's 64 px the last block has 2x2 cells, which cannot tell the lungs from the border
    strip, so the last block that still has `min_cells` (default 7, the article's map) is
    taken: 8x8, DenseNet121's transition after its second dense block (pool3_conv), ResNet50's
    conv3_block4_out, MobileNet's conv_pw_5_relu. Chosen from shapes alone, so any
    keras.applications base works; padding layers are passed over (their cells are not the
    image's: a 9x9 map of an 8x8 one)."""
    chosen = None
    for layer in base.layers:
        if isinstance(layer, keras.layers.ZeroPadding2D | keras.layers.InputLayer):
            continue
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4 and min(shape[1], shape[2]) >= min_cells:
            chosen = layer
    if chosen is None:
        raise DataError(
            f"{base.name}: no layer has a map of {min_cells}x{min_cells} cells or more; lower "
            "saliency.gradcam_min_cells"
        )
    return chosen


def _logit_head(head: keras.Model) -> keras.Model:
    """The head with its softmax removed: Grad-CAM differentiates the score before softmax,
    since a saturated probability (1.0 in float32) has no gradient. A copy: the run's model
    is left as it was."""
    copy = keras.models.clone_model(head)
    copy.set_weights(head.get_weights())
    copy.layers[-1].activation = keras.activations.linear
    return copy


def _upsample(cells: np.ndarray, size: int) -> np.ndarray:
    """[N, h, w] -> [N, size, size], bilinear (cell values at cell centres)."""
    resized = tf.image.resize(cells[..., None], (size, size), method="bilinear")
    return np.asarray(resized, dtype=np.float32)[..., 0]


def _cell_peaks(cells: np.ndarray) -> np.ndarray:
    """Centre of each map's highest cell, (x, y) in [0, 1]; the first in row order on ties;
    NaN for a map without positive evidence."""
    n, height, width = cells.shape
    flat = np.argmax(cells.reshape(n, -1), axis=1)
    rows, cols = np.divmod(flat, width)
    peaks = np.stack([(cols + 0.5) / width, (rows + 0.5) / height], axis=1)
    peaks[cells.reshape(n, -1).max(axis=1) <= 0] = np.nan
    return peaks


def gradcam(
    base: keras.Model,
    head: keras.Model,
    x: np.ndarray,
    predicted: np.ndarray,
    *,
    size: int,
    layer: keras.layers.Layer | None = None,
    batch_size: int = 16,
) -> Maps:
    """Grad-CAM (Selvaraju et al. 2017) of the predicted class on preprocessed images x
    [N, s, s, 3]: the block A (h x w x K) that `layer` outputs (default: the base's output),
    weights a_k = mean over cells of d(z_c - z_other)/dA_k, map = ReLU(sum_k a_k A_k),
    upsampled to size x size."""
    logits = _logit_head(head)
    if layer is base.layers[-1]:
        layer = None
    both = None if layer is None else keras.Model(base.inputs, [layer.output, base.output])
    cells = []
    for start in range(0, len(x), batch_size):
        batch = tf.convert_to_tensor(x[start : start + batch_size], tf.float32)
        sign = tf.constant(np.where(predicted[start : start + batch_size] == 1, 1.0, -1.0))
        with tf.GradientTape() as tape:
            if both is None:
                block = features = base(batch, training=False)
                tape.watch(block)
            else:
                block, features = both(batch, training=False)
            z = logits(features, training=False)
            # Two classes: the predicted class's score minus the other's.
            score = tf.cast(sign, z.dtype) * (z[:, 1] - z[:, 0])
        grads = tape.gradient(score, block)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cells.append(np.asarray(tf.nn.relu(tf.reduce_sum(weights * block, axis=-1))))
    native = np.concatenate(cells).astype(np.float32)
    return Maps(_upsample(native, size), _cell_peaks(native), native.shape[1:])


def images_per_call(image_size: int) -> int:
    """How many images of `image_size` px one classifier call takes: occlusion's batches and
    the calls that make them up, bounded in memory by PIXELS_PER_CALL."""
    return int(min(MAX_IMAGES_PER_CALL, max(1, PIXELS_PER_CALL // image_size**2)))


def occlusion(
    predict,
    images: np.ndarray,
    predicted: np.ndarray,
    *,
    patch: int,
    stride: int,
    batch_size: int = 256,
) -> Maps:
    """Occlusion sensitivity (Zeiler & Fergus 2014) on uint8 images [N, H, W, 1]: slide a
    mid-gray patch x patch square with `stride`, record how much P(predicted class) drops.
    A pixel's value is the mean drop over the patches that cover it (negative drops, where
    graying raised the probability, become 0); the cells are the patch positions.
    `predict(images) -> P(disease)` runs the whole classifier on uint8 images; it is given
    `batch_size` occluded images at a time, (position, image) pairs in position-major order,
    so that one call covers several positions when there are fewer images than that."""
    n, height, width = images.shape[:3]
    if not 0 < patch <= min(height, width) or stride < 1:
        raise DataError(f"occlusion patch {patch} / stride {stride} do not fit {height}x{width}")
    if batch_size < 1:
        raise DataError(f"occlusion batch_size {batch_size}: use 1 or more")
    ys = list(range(0, height - patch + 1, stride))
    xs = list(range(0, width - patch + 1, stride))
    positions = [(y, x) for y in ys for x in xs]
    occluded_prob = np.empty(len(positions) * n, np.float64)
    for start in range(0, len(occluded_prob), batch_size):
        flat = np.arange(start, min(start + batch_size, len(occluded_prob)))
        which, image = np.divmod(flat, n)
        batch = images[image]  # a copy: at most batch_size images in memory
        for k, p in enumerate(which):
            y, x = positions[p]
            batch[k, y : y + patch, x : x + patch] = OCCLUSION_GRAY
        occluded_prob[flat] = np.asarray(predict(batch), dtype=np.float64)
    sign = np.where(predicted == 1, 1.0, -1.0)
    original = np.asarray(predict(images), dtype=np.float64)
    # The drop of P(predicted): P(disease) for a disease call, 1 - P(disease) else; [P, N].
    drops = sign * (original - occluded_prob.reshape(len(positions), n))
    maps = np.zeros((n, height, width), np.float64)
    cover = np.zeros((height, width), np.float64)
    for p, (y, x) in enumerate(positions):
        maps[:, y : y + patch, x : x + patch] += drops[p][:, None, None]
        cover[y : y + patch, x : x + patch] += 1
    cells = drops.T.reshape(n, len(ys), len(xs))
    maps = np.maximum(maps / np.maximum(cover, 1), 0.0)
    return Maps(maps.astype(np.float32), _cell_peaks(cells), cells.shape[1:])
