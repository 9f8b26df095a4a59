"""Every run of one architecture in one process: for each protocol and run, the article's head
fitted on the stored features of the shared base (or, with augmentation or fine-tuning, the
whole model on the images), its checkpoints and history, and its P(disease) on the test and
external images that evaluation and the saliency maps read.

One process for all of an architecture's runs, because a head on ~100 stored feature vectors
fits in well under a second while a TensorFlow process takes ~4 s to start and trace: one job
per run was almost all start-up. Each run still writes its own files, at the paths the rules
declare, exactly as a process of its own would: the runs share compiled heads, each reset to a
head freshly built after its own seed (TracedHeads; docs/facts.md).

Read top to bottom: the job (plan -> rows -> fit -> predict -> files), then its steps: the
stored features, one run, the head's settings, the head and its fit (cxr.fitting holds the
resumable epoch loop both routes share), the images route (cxr.training), the predictions.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr.errors import ConfigError, DataError
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
    # A fresh Keras session, so that the names in the saved heads are those of a process that
    # fits one run alone; the runs on stored features then share compiled heads, each reset to
    # its own seeded head before it fits (TracedHeads).
    keras.backend.clear_session()
    heads = TracedHeads()
    for number, plan in enumerate(runs, start=1):
        plan = {**plan, "architecture": params["architecture"]}
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
            heads=heads,
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
    repeated = zip(
        params.get("repeats") or [],
        inputs.get("repeat_splits") or [],
        outputs.get("repeat_predictions") or [],
        strict=True,
    )
    for plan, splits_path, predictions_path in repeated:
        started = time.perf_counter()
        predictions = predict_repeats(plan, read_table(splits_path), features, params["checkpoint"])
        write_csv(predictions_path, predictions)
        log.info(
            "%s: %d repeated splits of %s in %.1f s",
            params["architecture"],
            predictions["repeat"].nunique(),
            plan["protocol"],
            time.perf_counter() - started,
        )
    return summaries


# --------------------------------------------------------------------------- stored features


class StoredFeatures:
    """The shared base's features of every curated image, found by image id."""

    def __init__(self, features: np.ndarray, ids: list[str], path: str):
        self.features, self.path = features, path
        self.where = pd.Series(np.arange(len(ids)), index=ids)
        self._ids = set(ids)

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
        missing = sorted(set(frame["id"]) - self._ids)
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
    heads: TracedHeads | None = None,
) -> dict:
    """Fit one run: the head on stored features, or the whole model on images when its
    protocol augments or fine-tunes. Writes model.keras, best.keras and history.csv."""
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
        import keras

        keras.backend.clear_session()  # a whole model per run: free the previous one's memory
        summary = _train_on_images(plan, settings, train_rows, val_rows, inputs, out_dir)
    else:
        summary = train_on_features(
            features.rows(train_rows, "training"),
            features.rows(val_rows, "validation"),
            settings,
            out_dir=out_dir,
            provenance=provenance,
            heads=heads,
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


# --------------------------------------------------------------------------- the head's settings


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Training hyper-parameters (config's `training` section, from_config); their defaults are
    the schema's (rules/config.schema.yaml), so every field is given. Epochs count from 1."""

    epochs: int
    batch_size: int
    learning_rate: float
    dropout: float
    dense_units: int
    pool_size: int
    seed: int
    augmentation: bool
    fine_tune_layers: int  # 0 = no fine-tuning stage
    fine_tune_epochs: int
    fine_tune_learning_rate: float
    mixed_precision: bool

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

    @classmethod
    def from_config(cls, training: dict, seed: int) -> TrainSettings:
        """The settings of config's `training` section (schema defaults filled in) for a run
        seeded `seed`; fine_tune.epochs counts only when fine_tune.layers is set."""
        fine_tune = training["fine_tune"]
        return cls(
            epochs=training["epochs"],
            batch_size=training["batch_size"],
            learning_rate=training["learning_rate"],
            dropout=training["dropout"],
            dense_units=training["dense_units"],
            pool_size=training["pool_size"],
            seed=seed,
            augmentation=training["augmentation"],
            fine_tune_layers=fine_tune["layers"],
            fine_tune_epochs=fine_tune["epochs"] if fine_tune["layers"] else 0,
            fine_tune_learning_rate=fine_tune["learning_rate"],
            mixed_precision=training["mixed_precision"],
        )

    @property
    def fine_tune(self) -> bool:
        return self.fine_tune_layers > 0 and self.fine_tune_epochs > 0


# --------------------------------------------------------------------------- the head and its fit


def require_rows(y_train: np.ndarray, y_val: np.ndarray, where: str) -> None:
    """A head needs training and validation images: say which set of `where` is empty."""
    for what, labels in (("training", y_train), ("validation", y_val)):
        if len(labels) == 0:
            raise DataError(f"the {what} set is empty: check {where}")


def seeded_head(feature_shape: tuple, settings: TrainSettings):
    """The article's head, built right after `keras.utils.set_random_seed(settings.seed)`, so
    its initial weights and Dropout stream never depend on what consumed randomness before
    (the cached-feature equivalence needs this; docs/facts.md). A keras.Model."""
    import keras

    from cxr.models import build_head

    keras.utils.set_random_seed(settings.seed)
    return build_head(
        feature_shape,
        pool_size=settings.pool_size,
        dense_units=settings.dense_units,
        dropout=settings.dropout,
    )


class TracedHeads:
    """The compiled heads of one process, one per feature shape and head settings: each run
    gets the one that fits it, reset to a freshly seeded head of its own seed
    (fitting.ResetModel), so that Keras traces a head's steps once per job, not once per run."""

    def __init__(self):
        self._heads: dict[tuple, Any] = {}

    def ready(self, feature_shape: tuple, settings: TrainSettings):
        """A compiled head in the state seeded_head(feature_shape, settings) would be in."""
        from cxr.fitting import ResetModel

        key = (tuple(feature_shape), settings.pool_size, settings.dense_units,
               settings.dropout, settings.learning_rate, settings.mixed_precision)  # fmt: skip
        fresh = seeded_head(feature_shape, settings)
        if key not in self._heads:
            self._heads[key] = ResetModel(fresh, settings.learning_rate)
            return fresh
        return self._heads[key].reset(fresh)


def train_on_features(
    train: tuple[np.ndarray, np.ndarray, list[str]],
    val: tuple[np.ndarray, np.ndarray, list[str]],
    settings: TrainSettings,
    *,
    out_dir: Path,
    provenance: dict[str, Any],
    callbacks: list | None = None,
    heads: TracedHeads | None = None,
) -> dict[str, Any]:
    """Fit the article's head on stored base features ((features, labels, ids) per split);
    write the head as model.keras / best.keras and history.csv to `out_dir`.

    The head on the shared frozen base is the whole classifier (cxr.models.build_classifier
    joins them), and fitting it on features gives the same weights as fitting base + head on
    the images (docs/facts.md). `provenance` (base file, architecture, ...) enters the resume
    fingerprint, so a run never resumes over another base. `heads`: the job's compiled heads,
    to reuse one (the same fit, traced once); by default a head of its own."""
    from cxr.fitting import Stage, fit_and_save, fit_facts, run_fingerprint
    from cxr.runtime import dtype_policy, list_devices

    if settings.augmentation or settings.fine_tune:
        raise ConfigError("stored features need a frozen base without augmentation")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (f_train, y_train, train_ids), (f_val, y_val, val_ids) = train, val
    require_rows(y_train, y_val, "the protocol's split")
    fingerprint = run_fingerprint(
        settings=dataclasses.asdict(settings),
        provenance=provenance,
        path="stored-features",
        train=train_ids,
        val=val_ids,
    )
    log.info(
        "head on stored features %s: %d training / %d validation images",
        f_train.shape[1:],
        len(y_train),
        len(y_val),
    )
    with dtype_policy(settings.mixed_precision):
        if heads is None:
            head = seeded_head(f_train.shape[1:], settings)
        else:
            head = heads.ready(f_train.shape[1:], settings)
        batches = ((lambda i, e, b: f_train[i]), (lambda i, e, b: f_val[i]), f_train.shape[1:])
        state, resumed_from, seconds_fit = fit_and_save(
            head,
            head,
            batches=batches,
            y_train=y_train,
            y_val=y_val,
            batch_size=settings.batch_size,
            seed=settings.seed,
            stages=[Stage(settings.epochs, settings.learning_rate)],
            out_dir=out_dir,
            fingerprint=fingerprint,
            callbacks=callbacks,
            compiled=heads is not None,
        )
    return {
        "path": "stored-features",
        "n_train": len(y_train),
        "n_val": len(y_val),
        **fit_facts(state, resumed_from, settings.epochs),
        "seconds_fit": round(seconds_fit, 3),
        "mixed_precision": settings.mixed_precision,
        "devices": list_devices(),
    }


# --------------------------------------------------------------------------- predictions


REPEAT_COLUMNS = ["repeat", "split_seed", "id", "patient", "source", "label", "probability"]


def predict_repeats(
    plan: dict, table: pd.DataFrame, features: StoredFeatures, checkpoint: str
) -> pd.DataFrame:
    """For each repeated split of a protocol (`table`: split_repeats' rows, column `repeat`):
    the head fitted on its training rows with the protocol's first training seed, kept in
    memory (nothing written: fitting.InMemoryFit), and its P(disease) on the repeat's test
    images. The head of repeat 0, whose split is the protocol's own, is the protocol's first
    run, so its predictions are that run's (tests/test_jobs.py)."""
    import keras

    from cxr.fitting import InMemoryFit
    from cxr.runtime import dtype_policy

    training, run = plan["training"], plan["run"]
    settings = TrainSettings.from_config(training, run["seed"])
    if settings.augmentation or settings.fine_tune:
        raise ConfigError(
            f"protocols.{plan['protocol']}.repeats: repeated splits fit heads on stored "
            "features, which augmentation and fine-tuning rule out; set repeats: 0"
        )
    rows, fit = [], None
    with dtype_policy(settings.mixed_precision):
        for repeat, splits in table.groupby("repeat", sort=True):
            train_rows, val_rows = training_rows(splits, run)
            (f_train, y_train, _), (f_val, y_val, _) = (
                features.rows(train_rows, "training"),
                features.rows(val_rows, "validation"),
            )
            require_rows(y_train, y_val, f"repeat {repeat} of {plan['protocol']}")
            if fit is None:
                # One seeded head for all repeats: each starts from its initial state.
                keras.backend.clear_session()
                fit = InMemoryFit(
                    seeded_head(features.shape, settings),
                    batch_size=settings.batch_size,
                    seed=settings.seed,
                    epochs=settings.epochs,
                    learning_rate=settings.learning_rate,
                )
            final, best = fit(
                # Used within this iteration only: the fit ends before the next repeat.
                ((lambda i, e, b: f_train[i]), (lambda i, e, b: f_val[i]), features.shape),  # noqa: B023
                y_train,
                y_val,
            )
            fit.model.set_weights(final if checkpoint == "final" else best)
            test = evaluated_rows(splits)
            test = test[test["split"] == "test"]
            x, y, _ = features.rows(test, "test")
            prob = np.asarray(fit.model.predict(x, batch_size=256, verbose=0))[:, 1]
            rows.append(prediction_table(test, prob, REPEAT_COLUMNS))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=REPEAT_COLUMNS)


def prediction_table(frame: pd.DataFrame, prob: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The `columns` of split rows `frame`, its label (y) and P(disease) `prob`, row by row."""
    table = frame.assign(label=frame["y"].astype(int), probability=prob.astype(float))
    return table[columns].reset_index(drop=True)


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
    predictions = prediction_table(frame, prob, PREDICTION_COLUMNS)
    write_csv(files["predictions"], predictions)
    log.info("predicted %d test and external images (%s)", len(predictions), how)
    return how
