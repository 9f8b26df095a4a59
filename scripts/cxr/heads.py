"""Every run of one architecture in one process: for each protocol and run, the article's head
fitted on the stored features of the shared base (or, with augmentation or fine-tuning, the
whole model on the images), its checkpoints and history, and its P(disease) on the test and
external images that evaluation and the saliency maps read.

One process for all of an architecture's runs, because a head on ~100 stored feature vectors
fits in well under a second while a TensorFlow process takes ~4 s to start and trace: one job
per run was almost all start-up. Each run still writes its own files, at the paths the rules
declare, exactly as a process of its own would (the Keras session is cleared and the run's seed
set before each head is built).

Read top to bottom: the job (plan -> rows -> fit -> predict -> files), then its steps.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.errors import DataError
from cxr.io import read_json, read_table, sha256_file, write_csv, write_json
from cxr.jobs import architecture, runtime_record

log = logging.getLogger(__name__)
# The per-run files of train_models, by output name (the rule declares one list per name, in
# the order of params["runs"]).
RUN_OUTPUTS = ("model", "best", "history", "summary", "predictions")
CHECKPOINT_FILES = {"final": "model.keras", "best": "best.keras"}
PREDICTION_COLUMNS = ["split", "id", "patient", "source", "label", "probability"]


def train_models_job(*, inputs: dict, outputs: dict, params: dict, threads: int) -> list[dict]:
    """Fit every run in params["runs"] (dicts with protocol, run, training), one after the
    other, and write each run's model.keras, best.keras, history.csv, summary.json and
    predictions. inputs["splits"] lists the splits of params["protocols"], in that order."""
    import keras

    runtime = runtime_record(threads, params.get("require_gpu", False))
    runs = params["runs"]
    for name in RUN_OUTPUTS:
        if len(outputs[name]) != len(runs):
            raise DataError(f"{len(outputs[name])} '{name}' outputs for {len(runs)} runs")
    splits = {
        protocol: read_table(path)
        for protocol, path in zip(params["protocols"], inputs["splits"], strict=True)
    }
    features = StoredFeatures.load(inputs["features"], inputs["table"])
    weights = read_json(inputs["feature_summary"])["weights"]
    provenance = {
        "features": sha256_file(inputs["features"]),
        "architecture": params["architecture"],
    }
    summaries = []
    started = time.perf_counter()
    for number, plan in enumerate(runs, start=1):
        plan = {**plan, "architecture": params["architecture"]}
        # A fresh Keras session per run: layer and variable names, and the random state a head
        # is built from, are those of a process that fits this run alone.
        keras.backend.clear_session()
        files = {name: outputs[name][number - 1] for name in RUN_OUTPUTS}
        run_started = time.perf_counter()
        summary = train_run(
            plan,
            splits[plan["protocol"]],
            features,
            inputs=inputs,
            files=files,
            architecture_name=params["architecture"],
            provenance=provenance,
        )
        prediction = predict_run(plan, splits[plan["protocol"]], features, inputs, files, params)
        summary.update(
            {
                "weights": weights,
                "prediction": prediction,
                "checkpoint": params["checkpoint"],
                "runtime": runtime,
            }
        )
        write_json(files["summary"], summary)
        summaries.append(summary)
        log.info(
            "run %d/%d: %s %s done in %.1f s",
            number,
            len(runs),
            plan["protocol"],
            plan["run"]["name"],
            time.perf_counter() - run_started,
        )
    seconds = time.perf_counter() - started
    log.info("%d runs of %s in %.1f s", len(runs), params["architecture"], seconds)
    return summaries


# --------------------------------------------------------------------------- stored features


class StoredFeatures:
    """The shared base's features of every curated image, found by image id."""

    def __init__(self, features: np.ndarray, ids: list[str], path: str):
        self.features, self.path = features, path
        self.where = pd.Series(np.arange(len(ids)), index=ids)

    @classmethod
    def load(cls, features_path: str, table_path: str) -> StoredFeatures:
        features = np.load(features_path, mmap_mode="r")
        table = read_table(table_path)
        if len(table) != len(features):
            raise DataError(
                f"{features_path} has {len(features)} rows but {table_path} names "
                f"{len(table)} images; rerun extract_features"
            )
        return cls(features, list(table["id"]), features_path)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    def rows(self, frame: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(features, labels, ids) of the images of `frame` (columns id, y), in its order."""
        missing = sorted(set(frame["id"]) - set(self.where.index))
        if missing:
            raise DataError(
                f"{len(missing)} {what} image(s) have no stored features in {self.path}, e.g. "
                f"{missing[:3]}; rerun extract_features"
            )
        index = self.where[frame["id"]].to_numpy()
        return np.asarray(self.features[index]), frame["y"].to_numpy(np.int64), list(frame["id"])


# --------------------------------------------------------------------------- one run


def training_rows(splits: pd.DataFrame, run: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, val) rows of one run of a protocol: a learning-curve run trains on its
    nested subset of the training patients."""
    from cxr.split import subsample_patients

    if run.get("train_fraction") is None:
        train = splits[splits["split"] == "train"]
    else:
        train = subsample_patients(splits, run["train_fraction"], run["seed"])
    return train, splits[splits["split"] == "val"]


def train_run(
    plan: dict,
    splits: pd.DataFrame,
    features: StoredFeatures,
    *,
    inputs: dict,
    files: dict,
    architecture_name: str,
    provenance: dict,
) -> dict:
    """Fit one run: the head on stored features, or the whole model on images when its
    protocol augments or fine-tunes. Writes model.keras, best.keras and history.csv."""
    from cxr.training import TrainSettings, train_on_features

    training, run = plan["training"], plan["run"]
    settings = TrainSettings.from_config(training, run["seed"])
    out_dir = Path(files["model"]).parent
    # The fitting writes these names into the run's folder: the rule must declare the same.
    for name, file in (
        ("model", "model.keras"),
        ("best", "best.keras"),
        ("history", "history.csv"),
    ):
        if Path(files[name]) != out_dir / file:
            raise DataError(f"output {name} must be {out_dir / file}, is {files[name]}")
    train_rows, val_rows = training_rows(splits, run)
    log.info(
        "protocol %s, run %s: %d training images of %d patients, %d validation images",
        plan["protocol"],
        run["name"],
        len(train_rows),
        train_rows["patient"].nunique(),
        len(val_rows),
    )
    if settings.augmentation or settings.fine_tune:
        summary = _train_on_images(plan, settings, train_rows, val_rows, inputs, out_dir)
    else:
        summary = train_on_features(
            features.rows(train_rows, "training"),
            features.rows(val_rows, "validation"),
            settings,
            out_dir=out_dir,
            provenance=provenance,
        )
    summary.update(
        {
            "architecture": architecture_name,
            "protocol": plan["protocol"],
            "run": run["name"],
            "seed": run["seed"],
            "train_fraction": run.get("train_fraction"),
            "n_train_patients": int(train_rows["patient"].nunique()),
            "image_size": training["image_size"],
        }
    )
    return summary


def _train_on_images(plan, settings, train_rows, val_rows, inputs, out_dir) -> dict:
    """The augmentation and fine-tuning route: base + head fitted on the images."""
    import keras
    import tensorflow as tf

    from cxr.shards import load_images
    from cxr.training import train

    def dataset(frame):
        images, table = load_images(inputs["manifest"], list(frame["id"]))
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": table["label"].to_numpy(np.int64), "id": table["id"]}
        )

    training = plan["training"]
    return train(
        architecture(plan["architecture"], training),
        dataset(train_rows),
        dataset(val_rows),
        settings,
        image_size=training["image_size"],
        weights=None,
        out_dir=out_dir,
        strategy="full-model",
        base=keras.models.load_model(inputs["base"], compile=False),
    )


# --------------------------------------------------------------------------- predictions


def evaluated_rows(splits: pd.DataFrame) -> pd.DataFrame:
    """The rows evaluation scores: the protocol's test split and the external images."""
    frame = splits[splits["split"].isin(["test", "external"])].sort_values(["split", "id"])
    return frame.reset_index(drop=True)


def predict_run(
    plan: dict,
    splits: pd.DataFrame,
    features: StoredFeatures,
    inputs: dict,
    files: dict,
    params: dict,
) -> str:
    """Write P(disease) of the run's evaluated checkpoint (params["checkpoint"]: final or
    best) on its test and external images; return how it was computed."""
    import keras

    from cxr.models import preprocess
    from cxr.shards import load_images

    checkpoint = Path(files["model"]).with_name(CHECKPOINT_FILES[params["checkpoint"]])
    model = keras.models.load_model(checkpoint, compile=False)
    frame = evaluated_rows(splits)
    if tuple(model.input_shape[1:]) == features.shape:
        # The run's classifier is the shared base + this head, and extract_features checked
        # that the saved base reproduces these features: no base pass is needed here.
        x, _, _ = features.rows(frame, "evaluation")
        prob = np.asarray(model.predict(x, batch_size=256, verbose=0))[:, 1]
        how = "head on the stored features of the shared base"
    else:
        # A fine-tuned or augmented run saved the whole model: it must see the images.
        training = plan["training"]
        images, _ = load_images(inputs["manifest"], list(frame["id"]))
        x = preprocess(architecture(plan["architecture"], training), images, training["image_size"])
        prob = np.asarray(model.predict(x, batch_size=32, verbose=0))[:, 1]
        how = "full model on images"
    predictions = frame[["split", "id", "patient", "source"]].copy()
    predictions["label"] = frame["y"].astype(int)
    predictions["probability"] = prob.astype(float)
    write_csv(files["predictions"], predictions[PREDICTION_COLUMNS])
    log.info("predicted %d test and external images (%s)", len(predictions), how)
    return how
