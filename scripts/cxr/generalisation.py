"""Generalisation: each architecture's internal test beside every external set (an external
source alone, or a named group of them), every metric with its interval, and the gap in points
(external minus internal) with a bootstrap interval."""

from __future__ import annotations

import pandas as pd

from cxr import metrics
from cxr.compare import first_runs

# The metrics of the table, in its order, by the names binary_metrics gives them.
SHOWN = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc")
# The gap is measured where the external set defines the metric as the test split does: a
# one-class set's accuracy is its sensitivity or specificity, not an accuracy.
GAP_METRICS = {
    "both": ("accuracy", "sensitivity", "specificity", "roc_auc"),
    "positive": ("sensitivity",),
    "negative": ("specificity",),
}


def metric_interval(metric: dict) -> dict:
    """The metric's value with the interval the test table shows first: the patient bootstrap
    where there is one (accuracy), else its own (Wilson, or the bootstrap of AUC and F1)."""
    ci = metric.get("ci95_patient_bootstrap") or metric.get("ci95")
    out = {"value": metric.get("value"), "ci95": ci}
    if metric.get("why"):
        out["why"] = metric["why"]
    return out


def _arrays(part: pd.DataFrame):
    return part["label"].to_numpy(), part["probability"].to_numpy(), part["patient"].to_numpy()


def generalisation(
    runs: list[dict], *, protocol: str, threshold: float, n_boot: int, seed: int
) -> dict:
    """`runs`: {"evaluation": eval JSON, "predictions": DataFrame} of the protocol's runs; per
    architecture its run with the lowest seed."""
    stats = metrics.statistics(threshold)
    result: dict = {"protocol": protocol, "threshold": threshold, "architectures": {}}
    for arch, run in first_runs(runs, protocol).items():
        ev, predictions = run["evaluation"], run["predictions"]
        test = predictions[predictions["split"] == "test"]
        rows = [
            {
                "set": "internal test",
                "kind": "test",
                "sources": sorted(test["source"].unique()),
                "classes": "both",
                "n": ev["test"]["n"],
                "patients": ev["test"]["n_patients"],
                "metrics": {k: metric_interval(ev["test"][k]) for k in SHOWN},
            }
        ]
        external = predictions[predictions["split"] == "external"]
        for name, entry in ev.get("external", {}).items():
            row = {
                "set": name,
                **{k: entry[k] for k in ("kind", "sources", "classes", "n", "patients")},
            }
            if not entry["n"]:
                rows.append(row | {"note": entry.get("note", "no images")})
                continue
            row["metrics"] = {k: metric_interval(entry["metrics"][k]) for k in SHOWN}
            if entry["classes"] != "both":
                # On one class, the share correct is that class's sensitivity or specificity,
                # already shown: not an accuracy to compare with the test split's.
                row["metrics"]["accuracy"] = {
                    "value": None,
                    "ci95": None,
                    "why": "one class only: see its sensitivity or specificity",
                }
            part = external[external["source"].isin(entry["sources"])]
            row["gap"] = {
                key: metrics.bootstrap_difference(
                    _arrays(part), _arrays(test), stats[key], n_boot=n_boot, seed=seed
                )
                for key in GAP_METRICS[entry["classes"]]
            }
            rows.append(row)
        result["architectures"][arch] = {"run": ev["run"], "seed": ev["seed"], "rows": rows}
    return result
