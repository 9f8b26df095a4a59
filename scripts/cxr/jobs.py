"""The TensorFlow jobs of the workflow (train, evaluate, border probe) as plain functions of
paths and settings. TensorFlow is imported by the callers' first use; the entry points set
TF_ENABLE_ONEDNN_OPTS before importing this module (it is read once, at import)."""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.architectures import resolve_architectures
from cxr.errors import DataError
from cxr.io import read_json, write_csv, write_json

log = logging.getLogger(__name__)
RANDOM_WEIGHTS = "none (random, BatchNorm recalibrated)"


def settings_from_config(training: dict, seed: int):
    from cxr.training import TrainSettings

    return TrainSettings(
        epochs=training["epochs"],
        batch_size=training["batch_size"],
        learning_rate=training["learning_rate"],
        dropout=training["dropout"],
        dense_units=training["dense_units"],
        pool_size=training["pool_size"],
        seed=seed,
        augmentation=training["augmentation"],
        fine_tune_layers=training["fine_tune"]["layers"],
        fine_tune_epochs=training["fine_tune"]["epochs"] if training["fine_tune"]["layers"] else 0,
        fine_tune_learning_rate=training["fine_tune"]["learning_rate"],
        mixed_precision=training["mixed_precision"],
    )


def weights_file(weights: list[str] | None) -> Path | None:
    """The verified ImageNet file for this job, or None for random weights."""
    if not weights:
        return None
    from cxr.weights import verify_weights

    return verify_weights(Path(weights[0]))


def architecture(name: str, training: dict):
    return resolve_architectures([name], training.get("extra_architectures") or {})[0]


def train_job(
    manifest_path: str, arch_name: str, seed: int, training: dict, weights: list[str],
    out_dir: str, threads: int, summary_path: str, require_gpu: bool = False,
) -> dict:  # fmt: skip
    """One training run: read the train/val shards, train, write the run's summary."""
    from cxr.shards import read_shards, shard_paths
    from cxr.training import configure_tensorflow, train
    from cxr.training import require_gpu as check_gpu

    runtime = configure_tensorflow(threads)
    # Where the job ran, for the provenance record (never in the byte-stable outputs).
    runtime["host"] = platform.node()
    runtime["environment"] = {
        k: os.environ.get(k)
        for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOB_PARTITION")
    }
    log.info("TensorFlow sees: %s; %s", runtime["devices"], runtime["environment"])
    if require_gpu:
        check_gpu(runtime)
    manifest = read_json(manifest_path)
    shard_dir = Path(manifest_path).parent
    arch = architecture(arch_name, training)
    path = weights_file(weights)
    summary = train(
        arch,
        read_shards(shard_paths(manifest, shard_dir, "train")),
        read_shards(shard_paths(manifest, shard_dir, "val")),
        settings_from_config(training, seed),
        image_size=training["image_size"],
        weights=path,
        out_dir=Path(out_dir),
    )
    summary.update(
        {
            "architecture": arch_name,
            "seed": seed,
            "weights": "imagenet" if path else RANDOM_WEIGHTS,
            "image_size": training["image_size"],
            "runtime": runtime,
        }
    )
    write_json(summary_path, summary)
    return summary


def evaluate_job(
    model_path: str, manifest_path: str, history_path: str, train_summary_path: str,
    arch_name: str, seed: int, training: dict, evaluation: dict, threads: int,
    outputs: dict, labels: dict,
) -> dict:  # fmt: skip
    """Evaluate one saved model on the test and external shards; write JSON, CSV and plots."""
    from cxr import plots
    from cxr.evaluate import evaluate_model
    from cxr.training import configure_tensorflow

    configure_tensorflow(threads)
    arch = architecture(arch_name, training)
    result, predictions = evaluate_model(
        Path(model_path), read_json(manifest_path), Path(manifest_path).parent, arch,
        image_size=training["image_size"], threshold=evaluation["threshold"],
        n_boot=evaluation["bootstrap"], seed=seed,
    )  # fmt: skip
    train_summary = read_json(train_summary_path)
    result.update(
        {
            "architecture": arch_name,
            "seed": seed,
            "checkpoint": evaluation["checkpoint"],
            "weights": train_summary.get("weights"),
            "image_size": training["image_size"],
            # No timings or resume facts: this file must be byte-identical across reruns;
            # they stay in the training summary (provenance).
            "training": {
                k: train_summary.get(k)
                for k in ("path", "epochs_run", "best_epoch", "best_val_loss")
            },
        }
    )
    write_json(outputs["metrics"], result)
    write_csv(outputs["predictions"], predictions)
    title = f"{arch_name}, seed {seed}"
    plots.training_curves(pd.read_csv(history_path), title, outputs["curves"])
    test = result["test"]
    plots.roc_curve(
        {"test": {**result["roc"], "auc": test["roc_auc"]["value"]}}, title, outputs["roc"]
    )
    plots.confusion_matrix(
        test["confusion_matrix"], (labels["negative"], labels["positive"]), title,
        outputs["confusion"],
    )  # fmt: skip
    return result


def blank_centre(images: np.ndarray, border_fraction: float) -> np.ndarray:
    """Keep only the outer strip of each image; the central (lung) region becomes 0."""
    from cxr.audit import border_mask

    out = images.copy()
    centre = ~border_mask(images.shape[1], images.shape[2], border_fraction)
    out[:, centre] = 0
    return out


def border_probe_job(
    manifest_path: str, arch_name: str, training: dict, audit: dict, weights: list[str],
    seed: int, n_boot: int, threads: int, probe_path: str, examples_path: str,
) -> dict:  # fmt: skip
    """The article's head, patient-grouped CV, on base features of centre-blanked images."""
    import keras

    from cxr import plots
    from cxr.audit import grouped_cv_probabilities, probe_result
    from cxr.models import build_base, preprocess, recalibrate_batchnorm
    from cxr.shards import read_shards, shard_paths
    from cxr.training import configure_tensorflow, seeded_head

    configure_tensorflow(threads)
    manifest = read_json(manifest_path)
    shard_dir = Path(manifest_path).parent
    paths = [
        p for split in ("train", "val", "test") for p in shard_paths(manifest, shard_dir, split)
    ]
    rows = list(read_shards(paths).as_numpy_iterator())
    if not rows:
        raise DataError(f"{manifest_path}: no training images in the shards")
    images = blank_centre(np.stack([r["image"] for r in rows]), audit["border_fraction"])
    y = np.array([int(r["label"]) for r in rows])
    groups = np.array([r["patient"].decode() for r in rows])
    arch = architecture(arch_name, training)
    size, batch = training["image_size"], training["batch_size"]
    settings = settings_from_config(training, seed)
    path = weights_file(weights)
    keras.utils.set_random_seed(seed)
    base = build_base(arch, size, path)
    inputs = preprocess(arch, images, size)
    if path is None:
        recalibrate_batchnorm(base, inputs, batch)
    features = np.asarray(base.predict(inputs, batch_size=32, verbose=0), dtype=np.float32)
    log.info("border probe: %d images, features %s", len(y), features.shape[1:])

    def fit_predict(x_train, y_train, x_test):
        head = seeded_head(features.shape[1:], settings)
        head.compile(
            optimizer=keras.optimizers.Adam(training["learning_rate"]),
            loss="sparse_categorical_crossentropy",
        )
        head.fit(x_train, y_train, epochs=training["epochs"], batch_size=batch, verbose=0)
        return np.asarray(head.predict(x_test, verbose=0))[:, 1]

    prob = grouped_cv_probabilities(features, y, groups, audit["cv_folds"], seed, fit_predict)
    result = probe_result(y, prob, groups, n_boot=n_boot, seed=seed)
    result.update(
        {
            "architecture": arch_name,
            "weights": "imagenet" if path else RANDOM_WEIGHTS,
            "border_fraction": audit["border_fraction"],
            "model": "the article's head on frozen base features, StratifiedGroupKFold by "
            f"patient ({audit['cv_folds']} folds)",
        }
    )
    write_json(probe_path, result)
    plots.image_grid(images, y, groups, examples_path, title="What the border-only probe sees")
    return result
