"""The TensorFlow jobs of the workflow on the base (features, border probe, saliency maps)
as plain functions of named inputs, outputs and params, as the rules declare them. The entry
points set TF_ENABLE_ONEDNN_OPTS before importing this module (TensorFlow reads it once).
The runs' heads are fitted in cxr.heads, and evaluated without TensorFlow in cxr.evaluate."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from cxr.architectures import resolve_architectures
from cxr.errors import DataError
from cxr.io import atomic_open, finite_or_none, read_table, write_csv, write_json

log = logging.getLogger(__name__)
RANDOM_WEIGHTS = "none (random, BatchNorm recalibrated)"
FEATURE_TABLE = ["id", "label", "patient", "source", "role"]
# The saved base, reloaded, reproduces the stored features to float32 rounding (relative to
# the features' largest magnitude); more means the two files do not belong together.
BASE_CHECK_TOLERANCE = 1e-4


def weights_file(weights: list[str] | None) -> Path | None:
    """The verified ImageNet file for this job, or None for random weights."""
    if not weights:
        return None
    from cxr.weights import verify_weights

    return verify_weights(Path(weights[0]))


def architecture(name: str, training: dict):
    return resolve_architectures([name], training.get("extra_architectures") or {})[0]


def runtime_record(threads: int, require_gpu: bool = False) -> dict[str, Any]:
    """Configure TensorFlow; return what it runs on and where, for the provenance record."""
    from cxr.runtime import configure_tensorflow
    from cxr.runtime import require_gpu as check_gpu

    runtime = configure_tensorflow(threads)
    runtime["host"] = platform.node()
    runtime["environment"] = {
        k: os.environ.get(k)
        for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOB_PARTITION")
    }
    log.info("TensorFlow sees: %s; %s", runtime["devices"], runtime["environment"])
    if require_gpu:
        check_gpu(runtime)
    return runtime


# --------------------------------------------------------------------------- base features


def extract_features_job(*, inputs: dict, outputs: dict, params: dict, threads: int) -> dict:
    """Build the architecture's frozen base once (random weights: BatchNorm recalibrated on the
    training-role images), save it, and store its features of every curated image."""
    import time

    from cxr.models import save_model
    from cxr.shards import load_images
    from cxr.training import base_features, prepare_base

    runtime = runtime_record(threads, params.get("require_gpu", False))
    training = params["training"]
    arch = architecture(params["architecture"], training)
    size, batch = training["image_size"], training["batch_size"]
    images, table = load_images(inputs["manifest"])
    trained = table["role"].to_numpy() == "train"
    if not trained.any():
        raise DataError(f"{inputs['manifest']}: no training-role images in the shards")
    path = weights_file(inputs.get("weights"))
    started = time.perf_counter()
    base, recalibrated = prepare_base(
        arch,
        images[trained],
        image_size=size,
        weights=path,
        seed=params["seed"],
        batch_size=batch,
    )
    seconds_base = time.perf_counter() - started
    started = time.perf_counter()
    features = base_features(base, arch, images, image_size=size, batch_size=32)
    seconds_features = time.perf_counter() - started
    log.info(
        "%s: features %s of %d images in %.1f s (%.1f images/s)",
        arch.name,
        features.shape[1:],
        len(features),
        seconds_features,
        len(features) / max(seconds_features, 1e-9),
    )
    save_model(base, outputs["base"])
    check = check_saved_base(
        outputs["base"], arch, images[: params["check_images"]], features, size
    )
    log.info("saved base reproduces the stored features: %s", check)
    with atomic_open(outputs["features"], "wb") as handle:
        np.save(handle, features)  # .npy: no timestamps, same bytes for the same features
    write_csv(outputs["table"], table[FEATURE_TABLE])
    summary = {
        "architecture": params["architecture"],
        "weights": "imagenet" if path else RANDOM_WEIGHTS,
        "base_seed": params["seed"],
        "image_size": size,
        "images": len(features),
        "batchnorm_recalibrated_on": int(trained.sum()) if recalibrated else 0,
        "batchnorm_recalibrated_layers": recalibrated,
        "feature_shape": list(features.shape[1:]),
        "forward_passes_per_image": 1,
        "saved_base_check_images": check["images"],
        "seconds_base": round(seconds_base, 3),
        "seconds_features": round(seconds_features, 3),
        "runtime": runtime,
    }
    write_json(outputs["summary"], summary)
    return summary


def check_saved_base(
    base_path: str | Path, arch, images: np.ndarray, features: np.ndarray, image_size: int
) -> dict:
    """Reload the saved base and run it on the first images: it must give their stored
    features. Every run's classifier is this base + its head, so the head's probabilities on
    stored features are then the saved full model's (tests/test_jobs.py checks it end to end),
    and no run needs a base forward pass of its own."""
    import keras

    from cxr.training import base_features

    count = len(images)
    if count == 0:
        return {"images": 0}
    base = keras.models.load_model(base_path, compile=False)
    again = base_features(base, arch, images, image_size=image_size, batch_size=32)
    scale = max(1.0, float(np.max(np.abs(features[:count]))))
    gap = float(np.max(np.abs(again - features[:count]))) / scale
    if gap > BASE_CHECK_TOLERANCE:
        raise DataError(
            f"the saved base {base_path} does not reproduce the stored features (relative gap "
            f"{gap:.2e} > {BASE_CHECK_TOLERANCE:g}); rerun extract_features"
        )
    return {"images": count, "relative_gap": gap}


# --------------------------------------------------------------------------- border probe


def blank_centre(images: np.ndarray, border_fraction: float) -> np.ndarray:
    """Keep only the outer strip of each image; the central (lung) region becomes 0."""
    from cxr.audit import border_mask

    out = images.copy()
    centre = ~border_mask(images.shape[1], images.shape[2], border_fraction)
    out[:, centre] = 0
    return out


def border_probe_job(*, inputs: dict, outputs: dict, params: dict, threads: int) -> dict:
    """The article's head, patient-grouped CV, on base features of centre-blanked images."""
    import keras

    from cxr import plots
    from cxr.audit import grouped_cv_probabilities, probe_result
    from cxr.heads import TrainSettings, seeded_head
    from cxr.models import preprocess
    from cxr.shards import load_images
    from cxr.training import prepare_base

    runtime_record(threads)
    training, audit = params["training"], params["audit"]
    seed, arch_name = params["seed"], params["architecture"]
    pixels, table = load_images(inputs["manifest"])
    trained = (table["role"] == "train").to_numpy()
    if not trained.any():
        raise DataError(f"{inputs['manifest']}: no training images in the shards")
    images = blank_centre(pixels[trained], audit["border_fraction"])
    y = table["label"].to_numpy()[trained]
    groups = table["patient"].to_numpy()[trained]
    arch = architecture(arch_name, training)
    size, batch = training["image_size"], training["batch_size"]
    settings = TrainSettings.from_config(training, seed)
    path = weights_file(inputs.get("weights"))
    # Its own base, recalibrated on the blanked images themselves: BatchNorm statistics of
    # whole images would not describe what this probe feeds the base.
    base, _ = prepare_base(arch, images, image_size=size, weights=path, seed=seed, batch_size=batch)
    x = preprocess(arch, images, size)
    features = np.asarray(base.predict(x, batch_size=32, verbose=0), dtype=np.float32)
    log.info("border probe: %d images, features %s", len(y), features.shape[1:])

    compiled = []

    def fit_predict(x_train, y_train, x_test):
        # Each fold's head as freshly seeded and compiled (its weights, Dropout's seed state,
        # a new Adam), fitted by model.fit with Keras's own shuffle, whose seed comes after
        # seeded_head's set_random_seed as before; but one compiled model for all folds, so
        # Keras traces its training and prediction steps once, not once per fold.
        fresh = seeded_head(features.shape[1:], settings)
        if not compiled:
            fresh.compile(
                optimizer=keras.optimizers.Adam(training["learning_rate"]),
                loss="sparse_categorical_crossentropy",
            )
            fresh.optimizer.build(fresh.trainable_variables)
            compiled.append((fresh, [v.numpy() for v in fresh.optimizer.variables]))
        head, optimizer_start = compiled[0]
        for variable, value in zip(head.variables, fresh.variables, strict=True):
            variable.assign(value.numpy())
        for variable, value in zip(head.optimizer.variables, optimizer_start, strict=True):
            variable.assign(value)
        head.fit(x_train, y_train, epochs=training["epochs"], batch_size=batch, verbose=0)
        return np.asarray(head.predict(x_test, verbose=0))[:, 1]

    prob = grouped_cv_probabilities(features, y, groups, audit["cv_folds"], seed, fit_predict)
    result = probe_result(y, prob, groups, n_boot=params["n_boot"], seed=seed)
    result.update(
        {
            "architecture": arch_name,
            "weights": "imagenet" if path else RANDOM_WEIGHTS,
            "border_fraction": audit["border_fraction"],
            "model": "the article's head on frozen base features, StratifiedGroupKFold by "
            f"patient ({audit['cv_folds']} folds)",
        }
    )
    write_json(outputs["probe"], result)
    plots.image_grid(
        images, y, groups, outputs["examples"], title="What the border-only probe sees"
    )
    return result


# --------------------------------------------------------------------------- saliency


def explain_job(*, inputs: dict, outputs: dict, params: dict, threads: int) -> dict:
    """Grad-CAM and occlusion maps of one run's classifier (shared base + its head) on every
    test image it was evaluated on, a bounded sample of each external source's and every image
    with a lung region in the annotations (saliency.select_images), their region statistics,
    and, where the data are synthetic, the pointing game against the planted opacities; the
    attention on the annotated lungs (cxr.lung_attention) and the model randomisation check
    (cxr.randomisation) in files of their own, as are the seconds spent."""
    import time

    import keras
    import tensorflow as tf

    from cxr import attribution, lung_attention, randomisation, saliency
    from cxr.models import preprocess
    from cxr.shards import load_images

    runtime_record(threads)
    settings, training = params["saliency"], params["training"]
    threshold = params["threshold"]
    evaluated = read_table(inputs["predictions"])
    per_source = settings["external_per_source"]
    with np.load(inputs["lungs"]) as stored:
        lungs = dict(zip(stored["ids"].tolist(), stored["masks"], strict=True))
    predictions = saliency.select_images(evaluated, per_source, params["seed"], always=lungs)
    chosen = saliency.selection(
        evaluated, predictions, per_source=per_source, seed=params["seed"],
        labels=params["labels"], always=lungs,
    )  # fmt: skip
    log.info(
        "mapping %d of %d images (%d left out by saliency.external_per_source: %s)",
        chosen["mapped"], chosen["images"], chosen["left_out"], per_source,
    )  # fmt: skip
    ids = list(predictions["id"])
    images, _ = load_images(inputs["manifest"], ids)
    arch = architecture(params["architecture"], training)
    size, side = training["image_size"], images.shape[1]
    base, head = attribution.split_classifier(
        keras.models.load_model(inputs["model"], compile=False),
        keras.models.load_model(inputs["base"], compile=False),
    )

    # Compiled once: occlusion calls the classifier many times (65 image-passes per image),
    # and an eager call of DenseNet121 costs 4-5x a compiled one at 64 px (measured here:
    # 2.3 s against 0.5 s for 8 calls on 30 images; the same probabilities to the last bit).
    classify = tf.function(
        lambda x: head(base(x, training=False), training=False), reduce_retracing=True
    )
    per_call = attribution.images_per_call(size)

    def predict(batch: np.ndarray) -> np.ndarray:
        """P(disease) of the whole classifier on uint8 images, as evaluation computes it."""
        out = [
            np.asarray(classify(preprocess(arch, batch[i : i + per_call], size)))
            for i in range(0, len(batch), per_call)
        ]
        return np.concatenate(out)[:, 1]

    prob = predict(images)
    gap = float(np.max(np.abs(prob - predictions["probability"].to_numpy())))
    if gap > 1e-4:
        raise DataError(
            f"{inputs['model']} gives probabilities {gap:.2e} away from {inputs['predictions']} "
            "on the same images; rerun evaluate_model"
        )
    predicted = (predictions["probability"].to_numpy() >= threshold).astype(int)
    seconds = {}
    started = time.perf_counter()
    layer = attribution.gradcam_layer(base, settings["gradcam_min_cells"])
    maps = {
        "gradcam": attribution.gradcam(
            base, head, preprocess(arch, images, size), predicted, size=side, layer=layer
        )
    }
    seconds["gradcam"] = time.perf_counter() - started
    started = time.perf_counter()
    patch = max(1, round(settings["occlusion_patch"] * side))
    stride = max(1, round(settings["occlusion_stride"] * side))
    maps["occlusion"] = attribution.occlusion(
        predict, images, predicted, patch=patch, stride=stride, batch_size=per_call
    )
    seconds["occlusion"] = time.perf_counter() - started
    for method, spent in seconds.items():
        log.info(
            "%s: %s of %d images in %.1f s (%.3f s per image)",
            params["architecture"], method, len(ids), spent, spent / max(1, len(ids)),
        )  # fmt: skip

    # Model randomisation (cxr.randomisation): the same maps with the head's weights re-drawn
    # from its initialisers, on a fixed sample of the mapped images, for the same class.
    started = time.perf_counter()
    again = randomisation.sanity_sample(ids, settings["randomisation_images"], params["seed"])
    keras.utils.set_random_seed(params["seed"])
    random_head = keras.models.clone_model(head)
    sample, classes = images[again], predicted[again]
    randomised = {}
    if again:  # saliency.randomisation_images: 0 turns the check off
        randomised["gradcam"] = attribution.gradcam(
            base, random_head, preprocess(arch, sample, size), classes, size=side, layer=layer
        )
        # The re-drawn weights in the traced classifier (it reads the head's variables when
        # called): the same arithmetic as a classifier of its own, without tracing the base
        # again (seconds for DenseNet121).
        trained = head.get_weights()
        head.set_weights(random_head.get_weights())
        try:
            randomised["occlusion"] = attribution.occlusion(
                predict, sample, classes, patch=patch, stride=stride, batch_size=per_call
            )
        finally:
            head.set_weights(trained)
    seconds["randomisation"] = time.perf_counter() - started
    log.info("%s: randomised head mapped again on %d images in %.1f s",
             params["architecture"], len(again), seconds["randomisation"])  # fmt: skip

    boxes = {}
    synthetic = inputs.get("synthetic")
    if synthetic:
        root = synthetic if isinstance(synthetic, str) else synthetic[0]
        boxes = saliency.ground_truth_boxes(
            read_table(params["ground_truth"]), read_table(inputs["images"]), root
        )
    result = saliency.statistics(
        predictions,
        {method: (found.maps, found.peaks) for method, found in maps.items()},
        threshold=threshold,
        border_fraction=params["border_fraction"],
        corner_fraction=settings["corner_fraction"],
        boxes=boxes,
        labels=params["labels"],
        n_boot=params["n_boot"],
        seed=params["seed"],
    )
    result = {
        "architecture": params["architecture"],
        "protocol": params["protocol"],
        "run": params["run"]["name"],
        "selection": chosen,
        **result,
        "methods": {
            "gradcam": {
                "description": "Grad-CAM of the score before softmax on the base's last "
                f"block with at least {settings['gradcam_min_cells']} cells per side "
                f"({layer.name}), upsampled bilinearly",
                "layer": layer.name,
                "cells": list(maps["gradcam"].cells_shape),
            },
            "occlusion": {
                "description": f"mid-gray {patch}x{patch} px patch, stride {stride} px; drop "
                "of P(predicted class), mean over the patches covering a pixel",
                "patch": patch,
                "stride": stride,
                "cells": list(maps["occlusion"].cells_shape),
            },
        },
    }
    write_json(outputs["statistics"], result)
    frame = predictions.reset_index(drop=True)
    frame = frame.assign(outcome=saliency.outcomes(frame, threshold))
    write_json(
        outputs["lungs"],
        {
            "architecture": params["architecture"],
            "protocol": params["protocol"],
            "run": params["run"]["name"],
            **lung_attention.lung_statistics(
                frame,
                {method: (found.maps, found.peaks) for method, found in maps.items()},
                lungs,
                labels=params["labels"],
                n_boot=params["n_boot"],
                seed=params["seed"],
            ),
        },
    )
    rhos = {
        method: randomisation.rank_correlations(maps[method].maps[again], found.maps)
        for method, found in randomised.items()
    }
    write_json(
        outputs["randomisation"],
        {
            "architecture": params["architecture"],
            "protocol": params["protocol"],
            "run": params["run"]["name"],
            "what": "the head's weights re-drawn from its layers' initialisers (seed "
            f"{params['seed']}); the same images, the same class (the trained model's call)",
            "sample": {
                "images": len(again),
                "of": len(ids),
                "rule": "the images with the smallest SHA-256 of '<seed>:<image id>' "
                f"(saliency.randomisation_images: {settings['randomisation_images']})",
            },
            "methods": {method: randomisation.summarise(rho) for method, rho in rhos.items()},
            "per_image": [
                {"id": ids[k], **{m: finite_or_none(rho[j]) for m, rho in rhos.items()}}
                for j, k in enumerate(again)
            ],
        },
    )
    saliency.write_arrays(
        outputs["maps"],
        {
            "ids": np.asarray(ids, dtype=str),
            "images": images[..., 0],
            # float16 of each map over its maximum: what overlays and shares need, at a
            # quarter of the size (shares do not depend on a map's scale).
            **{method: _unit_scale(found.maps) for method, found in maps.items()},
            **{f"{method}_peaks": found.peaks for method, found in maps.items()},
        },
    )
    # Timings go to the log, the caller and their own file, not the statistics JSON: same
    # results, same bytes. The cost file differs between reruns (wall-clock seconds).
    write_json(
        outputs["cost"],
        {
            "architecture": params["architecture"],
            "protocol": params["protocol"],
            "run": params["run"]["name"],
            "images": len(ids),
            "images_per_call": per_call,
            "seconds": {method: round(spent, 3) for method, spent in seconds.items()},
            "seconds_per_image": {
                method: round(seconds[method] / max(1, len(ids)), 4) for method in maps
            },
            # Both methods again on the sample of the randomisation check.
            "randomisation_images": len(again),
            "note": "wall-clock seconds of this job: they differ between reruns",
        },
    )
    return {**result, "seconds": seconds}


def _unit_scale(maps: np.ndarray) -> np.ndarray:
    peak = maps.reshape(len(maps), -1).max(axis=1, initial=0.0)
    return (maps / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float16)
