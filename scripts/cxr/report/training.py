"""Context of report/training.html.j2: one record per run of the primary protocol, with its
training facts and curves; the results and summary sections show the same records' metrics."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxr.errors import DataError
from cxr.io import read_json
from cxr.report.figures import png_file_uri
from cxr.report.results import misclassified

# Names the workflow gives its per-run outputs: results/eval/<arch>/seed<k>.json and
# results/models/<arch>/seed<k>/history.csv.
RUN_PATTERN = re.compile(r"(?P<arch>[^/]+)/seed(?P<seed>\d+)(?:/|\.)")
TIMING_KEYS = ("seconds_features", "seconds_fit", "resumed_from_epoch")


def run_key(path: str | Path) -> tuple[str, int]:
    """(architecture, seed) from a per-run output path."""
    match = RUN_PATTERN.search(Path(path).as_posix())
    if not match:
        raise DataError(f"{path}: expected a path like .../<arch>/seed<k>.json or /seed<k>/")
    return match["arch"], int(match["seed"])


def history_facts(history: pd.DataFrame) -> dict:
    """Epochs, last-epoch accuracies and the epoch of lowest validation loss."""
    if history.empty:
        return {"epochs": 0}
    last = history.iloc[-1]
    facts = {"epochs": len(history)}
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        facts[f"final_{column}"] = float(last[column]) if column in history else None
    if "val_loss" in history:
        best = history.loc[history["val_loss"].idxmin()]
        facts["lowest_val_loss_epoch"] = int(best["epoch"])
    return facts


def load_runs(inputs: dict) -> list[dict]:
    """One record per (architecture, seed): evaluation JSON, history, predictions, figures."""
    histories = {run_key(p): p for p in inputs.get("histories", [])}
    # Timings live in the training summaries (provenance), not in the byte-stable eval JSONs.
    timings = {
        run_key(p): {k: read_json(p).get(k) for k in TIMING_KEYS}
        for p in inputs.get("train_summaries", [])
    }
    predictions = {run_key(p): p for p in inputs.get("predictions", [])}
    runs = []
    for path in inputs["evaluations"]:
        path = Path(path)
        ev = read_json(path)
        key = (ev["architecture"], int(ev["seed"]))
        stem = path.name.removesuffix(".json")
        history = pd.read_csv(histories[key]) if key in histories else pd.DataFrame()
        threshold = ev["test"]["threshold"]
        errors = None
        if key in predictions:
            frame = pd.read_csv(predictions[key], dtype={"patient": str}, keep_default_na=False)
            errors = misclassified(frame, threshold)
        runs.append(
            {
                "arch": key[0],
                "seed": key[1],
                "name": f"{key[0]}, seed {key[1]}",
                "weights": ev.get("weights") or "unknown",
                "checkpoint": ev.get("checkpoint"),
                "image_size": ev.get("image_size"),
                "test": ev["test"],
                "per_source": ev.get("per_source", {}),
                "external": ev.get("external", {}),
                "training": ev.get("training", {}) | timings.get(key, {}) | history_facts(history),
                "errors": errors,
                "figures": {
                    kind: png_file_uri(path.with_name(f"{stem}.{kind}.png"))
                    for kind in ("curves", "roc", "confusion")
                },
            }
        )
    return runs


def context(inputs: dict) -> dict:
    """The key training.html.j2 shows: the runs, from rule render_report's per-run inputs."""
    return {"runs": load_runs(inputs)}
