"""Every run of one architecture in one process: for each protocol and run, the article's head
fitted on the stored features of the shared base (or, with augmentation or fine-tuning, the
whole model on the images), its checkpoints and history, and its P(disease) on the test and
external images that evaluation and the saliency maps read.

One process for all of an architecture's runs, because a head on ~100 stored feature vectors
fits in a tenth of a second while a TensorFlow process takes ~4 s to start: one job per run
was almost all start-up. Each run still writes its own files, at the paths the rules declare,
exactly as a process of its own would. A head's whole fit is one traced call of a compiled
head that every run of the job shares (CompiledHead: why, and what it equals, in its
docstring and docs/facts.md); nothing is saved until a fit ends, and a killed job fits its
heads again.

Read top to bottom: the job (plan -> rows -> fit -> predict -> files), then its steps: the
stored features, one run, the head's settings, the head and its fit, the images route
(cxr.training, resumable through cxr.fitting), the predictions.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr.errors import ConfigError, DataError
from cxr.io import read_json, read_table, write_csv, write_json
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
    summaries = []
    started = time.perf_counter()
    # A fresh Keras session, so that the names in the saved heads are those of a process that
    # fits one run alone; the runs on stored features then share compiled heads, each reset to
    # its own seeded head before it fits (CompiledHeads).
    keras.backend.clear_session()
    heads = CompiledHeads()
    for number, plan in enumerate(runs, start=1):
        plan = {**plan, "architecture": params["architecture"]}
        files = {name: outputs[name][number - 1] for name in RUN_OUTPUTS}
        run_started = time.perf_counter()
        summary, fitted = train_run(
            plan,
            splits[plan["protocol"]],
            features,
            inputs=inputs,
            files=files,
            architecture_name=params["architecture"],
            heads=heads,
        )
        prediction = predict_run(
            plan, splits[plan["protocol"]], features, inputs, files, params, fitted
        )
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
        predictions = predict_repeats(
            plan, read_table(splits_path), features, params["checkpoint"], heads
        )
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
    heads: CompiledHeads,
) -> tuple[dict, tuple[HeadFit, CompiledHead] | None]:
    """Fit one run: the head on stored features, or the whole model on images when its
    protocol augments or fine-tunes. Writes model.keras, best.keras and history.csv; returns
    the summary and, for a head, its fit and compiled head (None for a whole model)."""
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
        fitted = None
    else:
        summary, fit, head = train_on_features(
            features.rows(train_rows, "training"),
            features.rows(val_rows, "validation"),
            settings,
            out_dir=out_dir,
            heads=heads,
        )
        fitted = (fit, head)
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
    return summary, fitted


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


@dataclass
class HeadFit:
    """One fit of a head: a history row per epoch (HISTORY_COLUMNS), the last epoch's weights,
    and the weights of the epoch with the lowest validation loss (the first epoch's while no
    epoch has a finite one), as Keras's get_weights lists them."""

    rows: list[dict]
    final: list[np.ndarray]
    best: list[np.ndarray]
    best_epoch: int
    best_val_loss: float | None
    seconds: float

    def facts(self, epochs: int) -> dict[str, Any]:
        """The summary's facts of the fit, as the resumable fit gives them (a head never
        resumes: a killed job fits it again)."""
        from cxr.fitting import fit_facts

        state = {"rows": self.rows, "best_epoch": self.best_epoch,
                 "best_val_loss": self.best_val_loss}  # fmt: skip
        return fit_facts(state, 0, epochs)


class CompiledHead:
    """One compiled head, whose whole fit, every epoch's training and validation steps and the
    choice of the best epoch, is one traced TensorFlow function, called once per fit.

    Why: a head on ~100 stored feature vectors is microseconds of arithmetic per step, and
    model.fit spent ~100x that around each step and epoch (its data adapter, callbacks and
    per-epoch bookkeeping; our per-epoch resumable state cost more again: weights files and
    state.json after every epoch). The traced loop calls Keras's own train_step and test_step
    on the batches model.fit was fed, in the same order (epoch_order), so the weights and the
    history are bit for bit those of model.fit (tests/test_heads.py), at ~0.07 s for 15 epochs
    of 68 images here instead of ~1.9 s. Nothing is saved during the fit: a killed job fits
    its heads again, which costs less than resumable state would (cxr.fitting keeps that for
    the whole-model route, whose epochs can take minutes on a GPU).

    Each fit starts from a freshly seeded head (its weights, Dropout's seed state) and a fresh
    optimizer, so one compiled head serves every run of a job that has its feature shape and
    head settings (CompiledHeads): Keras and TensorFlow trace once per job, not once per run.
    """

    def __init__(self, feature_shape: tuple[int, ...], settings: TrainSettings):
        import tensorflow as tf

        from cxr.fitting import compile_for

        self.feature_shape = tuple(int(n) for n in feature_shape)
        model = seeded_head(self.feature_shape, settings)
        compile_for(model, settings.learning_rate)
        model.optimizer.build(model.trainable_variables)
        self.model = model
        # A fresh optimizer's state, and per seed a freshly seeded head's variables (building
        # a Keras model costs more than fitting one): what each fit starts from.
        self._optimizer_start = [v.numpy() for v in model.optimizer.variables]
        self._seeded = {settings.seed: [v.numpy() for v in model.variables]}
        # The best epoch's weights, kept inside the traced loop (a copy per epoch would cost
        # more than the epoch).
        self._best = [tf.Variable(v.numpy(), trainable=False) for v in model.weights]
        x_spec = tf.TensorSpec((None, *self.feature_shape), tf.float32)
        y_spec = tf.TensorSpec((None,), tf.int64)
        start_spec = [tf.TensorSpec(v.shape, v.dtype) for v in model.variables]
        self._fit = tf.function(
            self._fit_epochs,
            input_signature=[
                start_spec,
                x_spec,
                y_spec,
                tf.TensorSpec((None, None), tf.int64),
                x_spec,
                y_spec,
                tf.TensorSpec((), tf.int64),
            ],
        )

    def _fit_epochs(self, start, x, y, orders, x_val, y_val, batch_size):
        """Traced: from the head's variables `start` and a fresh optimizer, epoch e trains on
        x[orders[e]] in batches of batch_size, then validates on x_val in order; returns the
        history [epochs, 4], the best epoch (from 1) and its loss."""
        import tensorflow as tf

        model = self.model
        for variable, value in zip(model.variables, start, strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, self._optimizer_start, strict=True):
            variable.assign(value)
        epochs = tf.shape(orders, out_type=tf.int64)[0]
        n, n_val = tf.shape(orders, out_type=tf.int64)[1], tf.shape(y_val, out_type=tf.int64)[0]
        history = tf.TensorArray(tf.float32, size=tf.cast(epochs, tf.int32))
        best_epoch = tf.constant(0, tf.int64)
        best_loss = tf.constant(float("nan"), tf.float32)
        for epoch in tf.range(epochs):
            model.reset_metrics()  # an epoch's loss and accuracy are its own, as in fit
            for start in tf.range(0, n, batch_size):
                index = orders[epoch, start : start + batch_size]
                model.train_step((tf.gather(x, index), tf.gather(y, index)))
            trained = model.get_metrics_result()
            model.reset_metrics()
            for start in tf.range(0, n_val, batch_size):
                model.test_step(
                    (x_val[start : start + batch_size], y_val[start : start + batch_size])
                )
            validated = model.get_metrics_result()
            val_loss = tf.cast(validated["loss"], tf.float32)
            row = [trained["loss"], trained["accuracy"], validated["loss"], validated["accuracy"]]
            history = history.write(tf.cast(epoch, tf.int32), tf.cast(tf.stack(row), tf.float32))
            # The rule of the resumable fit (cxr.fitting): the first epoch, then any epoch
            # whose finite validation loss is below the best finite one so far.
            finite = tf.math.is_finite(val_loss)
            if (epoch == 0) | (finite & (~tf.math.is_finite(best_loss) | (val_loss < best_loss))):
                best_epoch = epoch + 1
                best_loss = tf.where(finite, val_loss, float("nan"))
                for kept, variable in zip(self._best, model.weights, strict=True):
                    kept.assign(variable)
        return history.stack(), best_epoch, best_loss

    def seeded(self, settings: TrainSettings) -> list[np.ndarray]:
        """The variables of seeded_head(feature_shape, settings), made once per seed."""
        if settings.seed not in self._seeded:
            fresh = seeded_head(self.feature_shape, settings)
            self._seeded[settings.seed] = [v.numpy() for v in fresh.variables]
        return self._seeded[settings.seed]

    def fit(self, train: tuple, val: tuple, settings: TrainSettings) -> HeadFit:
        """Fit a freshly seeded head (settings.seed) on (features, labels) `train`, validated
        on `val`, for settings.epochs in batches of settings.batch_size."""
        from cxr.fitting import HISTORY_COLUMNS, epoch_order
        from cxr.io import finite_or_none

        (x, y), (x_val, y_val) = train, val
        started = time.perf_counter()
        orders = np.stack([epoch_order(len(y), settings.seed, e) for e in range(settings.epochs)])
        history, best_epoch, best_loss = self._fit(
            self.seeded(settings), np.asarray(x, np.float32), np.asarray(y, np.int64), orders,
            np.asarray(x_val, np.float32), np.asarray(y_val, np.int64), settings.batch_size,
        )  # fmt: skip
        rows = [
            {
                "epoch": epoch,
                **dict(zip(HISTORY_COLUMNS[1:], map(finite_or_none, values), strict=True)),
            }
            for epoch, values in enumerate(history.numpy().tolist(), start=1)
        ]
        return HeadFit(
            rows=rows,
            final=self.model.get_weights(),
            best=[v.numpy() for v in self._best],
            best_epoch=int(best_epoch),
            best_val_loss=finite_or_none(best_loss),
            seconds=time.perf_counter() - started,
        )

    def predict(self, x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
        """P(disease) of the head with `weights` on features `x`."""
        self.model.set_weights(weights)
        return predict_disease(self.model, x)


def predict_disease(model, x: np.ndarray) -> np.ndarray:
    """P(disease) of a Keras classifier on `x`, in batches of 256 as model.predict makes them
    (the same step, without predict's per-call set-up, which costs more than a head's batch)."""
    if len(x) == 0:
        return np.zeros(0, np.float32)
    chunks = [model.predict_on_batch(x[i : i + 256]) for i in range(0, len(x), 256)]
    return np.concatenate([np.asarray(c) for c in chunks])[:, 1]


class CompiledHeads:
    """The compiled heads of one job, one per feature shape and head settings (CompiledHead)."""

    def __init__(self):
        self._heads: dict[tuple, CompiledHead] = {}

    def get(self, feature_shape: tuple, settings: TrainSettings) -> CompiledHead:
        key = (tuple(feature_shape), settings.pool_size, settings.dense_units,
               settings.dropout, settings.learning_rate, settings.mixed_precision)  # fmt: skip
        if key not in self._heads:
            self._heads[key] = CompiledHead(feature_shape, settings)
        return self._heads[key]


def write_fit(fit: HeadFit, head, saved, out_dir: Path) -> None:
    """history.csv, and `saved` (the head, or a classifier around it) as model.keras with the
    final weights and best.keras with the best epoch's, `head` holding them in turn."""
    from cxr.fitting import HISTORY_COLUMNS
    from cxr.models import save_model

    write_csv(out_dir / "history.csv", pd.DataFrame(fit.rows, columns=HISTORY_COLUMNS))
    head.set_weights(fit.final)
    save_model(saved, out_dir / "model.keras")
    head.set_weights(fit.best)
    save_model(saved, out_dir / "best.keras")
    head.set_weights(fit.final)


def train_on_features(
    train: tuple[np.ndarray, np.ndarray, list[str]],
    val: tuple[np.ndarray, np.ndarray, list[str]],
    settings: TrainSettings,
    *,
    out_dir: Path,
    heads: CompiledHeads,
) -> tuple[dict[str, Any], HeadFit, CompiledHead]:
    """Fit the article's head on stored base features ((features, labels, ids) per split);
    write the head as model.keras / best.keras and history.csv to `out_dir`. Returns the
    summary's facts, the fit and the compiled head it was fitted with.

    The head on the shared frozen base is the whole classifier (cxr.models.build_classifier
    joins them), and fitting it on features gives the same weights as fitting base + head on
    the images (docs/facts.md)."""
    from cxr.runtime import dtype_policy, list_devices

    if settings.augmentation or settings.fine_tune:
        raise ConfigError("stored features need a frozen base without augmentation")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (f_train, y_train, _), (f_val, y_val, _) = train, val
    require_rows(y_train, y_val, "the protocol's split")
    with dtype_policy(settings.mixed_precision):
        head = heads.get(f_train.shape[1:], settings)
        fit = head.fit((f_train, y_train), (f_val, y_val), settings)
        write_fit(fit, head.model, head.model, out_dir)
    log.info(
        "head on stored features %s, %d training / %d validation images: %d epochs in %.2f s, "
        "best epoch %d (val_loss %s), final val_loss %s val_accuracy %s",
        f_train.shape[1:], len(y_train), len(y_val), len(fit.rows), fit.seconds,
        fit.best_epoch, fit.best_val_loss, fit.rows[-1]["val_loss"],
        fit.rows[-1]["val_accuracy"],
    )  # fmt: skip
    summary = {
        "path": "stored-features",
        "n_train": len(y_train),
        "n_val": len(y_val),
        **fit.facts(settings.epochs),
        "seconds_fit": round(fit.seconds, 3),
        "mixed_precision": settings.mixed_precision,
        "devices": list_devices(),
    }
    return summary, fit, head


# --------------------------------------------------------------------------- predictions


REPEAT_COLUMNS = ["repeat", "split_seed", "id", "patient", "source", "label", "probability"]


def predict_repeats(
    plan: dict,
    table: pd.DataFrame,
    features: StoredFeatures,
    checkpoint: str,
    heads: CompiledHeads | None = None,
) -> pd.DataFrame:
    """For each repeated split of a protocol (`table`: split_repeats' rows, column `repeat`):
    the head fitted on its training rows with the protocol's first training seed, kept in
    memory (nothing written), and its P(disease) on the repeat's test images. The head of
    repeat 0, whose split is the protocol's own, is the protocol's first run, so its
    predictions are that run's (tests/test_jobs.py)."""
    from cxr.runtime import dtype_policy

    training, run = plan["training"], plan["run"]
    settings = TrainSettings.from_config(training, run["seed"])
    if settings.augmentation or settings.fine_tune:
        raise ConfigError(
            f"protocols.{plan['protocol']}.repeats: repeated splits fit heads on stored "
            "features, which augmentation and fine-tuning rule out; set repeats: 0"
        )
    heads = heads or CompiledHeads()
    rows = []
    with dtype_policy(settings.mixed_precision):
        head = heads.get(features.shape, settings)
        for repeat, splits in table.groupby("repeat", sort=True):
            train_rows, val_rows = training_rows(splits, run)
            (f_train, y_train, _), (f_val, y_val, _) = (
                features.rows(train_rows, "training"),
                features.rows(val_rows, "validation"),
            )
            require_rows(y_train, y_val, f"repeat {repeat} of {plan['protocol']}")
            fit = head.fit((f_train, y_train), (f_val, y_val), settings)
            test = evaluated_rows(splits)
            test = test[test["split"] == "test"]
            x, _, _ = features.rows(test, "test")
            prob = head.predict(x, fit.final if checkpoint == "final" else fit.best)
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
    fitted: tuple[HeadFit, CompiledHead] | None,
) -> str:
    """Write P(disease) of the run's evaluated checkpoint (params["checkpoint"]: final or
    best) on its test and external images; return how it was computed. `fitted`: the head's
    fit and compiled head (train_run), None for a whole model, which is read back from its
    checkpoint file."""
    import keras

    from cxr.models import preprocess
    from cxr.shards import load_images

    frame = evaluated_rows(splits)
    if fitted is not None:
        # The run's classifier is the shared base + this head, and extract_features checked
        # that the saved base reproduces these features: no base pass is needed here. The
        # head's weights are those just saved (tests/test_jobs.py loads the file and compares).
        fit, head = fitted
        x, _, _ = features.rows(frame, "evaluation")
        prob = head.predict(x, fit.final if params["checkpoint"] == "final" else fit.best)
        how = "head on the stored features of the shared base"
    else:
        checkpoint = Path(files["model"]).with_name(CHECKPOINT_FILES[params["checkpoint"]])
        model = keras.models.load_model(checkpoint, compile=False)
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
