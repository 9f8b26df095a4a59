"""Resumable fitting, the route of whole models on images (augmentation, fine-tuning): a model
fitted stage after stage on batches in a seeded per-epoch order, its state saved after every
epoch so that a killed run resumes where it stopped and ends with the weights an uninterrupted
run would have; then history.csv, model.keras and best.keras. Worth it where an epoch is a pass
of a base over images (minutes on a GPU for the article's sizes); a head on stored features
fits in a fraction of a second, and cxr.heads fits it in one traced call instead, saving
nothing until it ends. Both routes share the batch order (epoch_order), the compile
(compile_for) and the history's columns.

Hand-written instead of keras.callbacks.BackupAndRestore because that callback (Keras 3.15)
writes its weights and epoch number non-atomically (a kill in between resumes from a wrong
epoch), does not keep the Dropout RNG state (a resumed run diverges from an uninterrupted one),
and knows nothing of the history rows and best epoch we must write at the end. Here each epoch
writes its weight files first, then state.json (atomically) naming them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
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

from cxr.io import atomic_open, atomic_path, finite_or_none, read_json, write_csv, write_json
from cxr.models import save_model

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
_LOSS = "sparse_categorical_crossentropy"  # labels are class indices: 1 = disease, 0 = healthy


# --------------------------------------------------------------------------- batches


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the n training examples in `epoch` (0-based) of a run seeded `seed`."""
    # A function of (seed, epoch) alone, so a resumed run sees the batches it would have seen
    # uninterrupted, and both training strategies see the same batches.
    return np.random.default_rng([seed, epoch]).permutation(n)


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


# --------------------------------------------------------------------------- state


def _rng_variables(model: keras.Model) -> list:
    # Dropout's SeedGenerator state: a model variable that save_weights does not store.
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


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
        row = {"epoch": done, **{key: finite_or_none(logs[key]) for key in HISTORY_COLUMNS[1:]}}
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
        with atomic_path(self.backup / name) as tmp:
            self.model.save_weights(tmp)
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


def run_fingerprint(**values: Any) -> str:
    """What a run's resumable state must match (settings, data, provenance): a sha256."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------- stages


@dataclass
class Stage:
    """One fit of the model at one learning rate, up to epoch `end` (counted from 1)."""

    end: int  # epochs done when the stage ends
    learning_rate: float
    prepare: Callable[[], None] | None = None  # e.g. unfreeze layers


def compile_for(model: keras.Model, learning_rate: float) -> None:
    """Adam at `learning_rate`, the class-index cross-entropy, accuracy: every fit's compile."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_LOSS, metrics=["accuracy"])


def _fit_stages(
    model: keras.Model,
    stages: list[Stage],
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
        compile_for(model, stage.learning_rate)
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
            shuffle=False,  # the batches come in our own order (see epoch_order)
            callbacks=[_Checkpoint(backup, number, state, fingerprint, stages[-1].end), *callbacks],
            verbose=0,
        )
    return state, start


def fit_and_save(
    model: keras.Model,
    saved: keras.Model,
    *,
    batches: tuple[Callable, Callable, tuple[int, ...]],
    y_train: np.ndarray,
    y_val: np.ndarray,
    batch_size: int,
    seed: int,
    stages: list[Stage],
    out_dir: Path,
    fingerprint: str,
    callbacks: list | None = None,
) -> tuple[dict, int, float]:
    """Fit `model` (resumable from out_dir/backup), then write history.csv and `saved` as
    model.keras (last epoch) and best.keras (lowest validation loss). `batches`: make_x(index,
    epoch, batch number) for training and for validation, and the shape of x; the training
    batches come in the order epoch_order(seed) gives. Returns the
    final state, the epoch resumed from (0: a fresh run) and the seconds the fit took."""
    make_x, make_val, x_shape = batches
    backup = out_dir / "backup"

    def train_batches(first: int, end: int) -> tf.data.Dataset:
        def orders():
            return ((e, epoch_order(len(y_train), seed, e)) for e in range(first, end))

        return _batch_dataset(make_x, y_train, orders, batch_size, x_shape)

    def val_orders():
        return iter([(0, np.arange(len(y_val)))])

    val_batches = _batch_dataset(
        make_val, y_val, val_orders, batch_size, x_shape, math.ceil(len(y_val) / batch_size)
    )
    started = time.perf_counter()
    state, resumed_from = _fit_stages(
        model,
        stages,
        train_batches,
        val_batches,
        math.ceil(len(y_train) / batch_size),
        backup,
        fingerprint,
        list(callbacks or []),
    )
    seconds_fit = time.perf_counter() - started
    write_csv(out_dir / "history.csv", pd.DataFrame(state["rows"], columns=HISTORY_COLUMNS))
    save_model(saved, out_dir / "model.keras")
    _load_best(model, backup, state)
    save_model(saved, out_dir / "best.keras")
    shutil.rmtree(backup)
    return state, resumed_from, seconds_fit


def fit_facts(state: dict, resumed_from: int, epochs: int) -> dict[str, Any]:
    """The summary's facts of a finished fit: epochs, resume point, best and final epoch."""
    return {
        "epochs": epochs,
        "epochs_run": len(state["rows"]),
        "resumed_from_epoch": resumed_from,
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best_val_loss"],
        "final": state["rows"][-1],
    }
