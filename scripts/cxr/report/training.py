"""Context of report/training.html.j2: one record per run of the primary protocol, with its
training facts and curves; the results and summary sections show the same records' metrics.
The per-run files are rule render_report's declared inputs, paired by position."""

from __future__ import annotations

import pandas as pd

from cxr.errors import DataError
from cxr.io import read_json, read_table
from cxr.report.figures import png_file_uri
from cxr.report.results import misclassified

# Timings live in the training summaries (provenance), not in the byte-stable eval JSONs.
TIMING_KEYS = ("seconds_features", "seconds_fit", "resumed_from_epoch")
# Rule render_report's `figures`: the curves of every run, then the ROC of every run, then the
# confusion matrix of every run, each in the order of `evaluations`.
FIGURE_KINDS = ("curves", "roc", "confusion")


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


def declared(inputs: dict, name: str) -> list[str]:
    """The files of rule render_report's input `name`."""
    if name not in inputs:
        raise DataError(f"render_report: no input {name!r}; rules/report.smk declares it")
    return list(inputs[name])


def load_runs(inputs: dict) -> list[dict]:
    """One record per run of `evaluations`: its evaluation, history, training summary,
    predictions and figures. Rule render_report declares every per-run input in the same run
    order (and `figures` as FIGURE_KINDS in turn), so they pair by position."""
    evaluations = declared(inputs, "evaluations")
    n = len(evaluations)
    per_run = {"predictions": 1, "histories": 1, "train_summaries": 1, "figures": len(FIGURE_KINDS)}
    paths = {}
    for name, count in per_run.items():
        paths[name] = declared(inputs, name)
        if len(paths[name]) != count * n:
            raise DataError(
                f"render_report: input {name!r} lists {len(paths[name])} files for the {n} runs "
                f"of 'evaluations' (expected {count * n}); declare {count} per run, in run order"
            )
    figures = [paths["figures"][k * n : (k + 1) * n] for k in range(len(FIGURE_KINDS))]
    columns = [paths["predictions"], paths["histories"], paths["train_summaries"], *figures]
    runs = []
    for path, predictions, history, train_summary, *figure_paths in zip(
        evaluations, *columns, strict=True
    ):
        ev = read_json(path)
        arch, seed = ev["architecture"], int(ev["seed"])
        summary = read_json(train_summary)
        timings = {k: summary.get(k) for k in TIMING_KEYS}
        runs.append(
            {
                "arch": arch,
                "seed": seed,
                "name": f"{arch}, seed {seed}",
                "weights": ev.get("weights") or "unknown",
                "checkpoint": ev.get("checkpoint"),
                "image_size": ev.get("image_size"),
                "test": ev["test"],
                "per_source": ev.get("per_source", {}),
                "external": ev.get("external", {}),
                "training": ev.get("training", {}) | timings | history_facts(pd.read_csv(history)),
                "errors": misclassified(read_table(predictions), ev["test"]["threshold"]),
                "figures": {
                    kind: png_file_uri(figure)
                    for kind, figure in zip(FIGURE_KINDS, figure_paths, strict=True)
                },
                "paths": dict(zip(FIGURE_KINDS, map(str, figure_paths), strict=True)),
            }
        )
    return runs


def context(inputs: dict) -> dict:
    """The key training.html.j2 shows: the runs, from rule render_report's per-run inputs."""
    return {"runs": load_runs(inputs)}
