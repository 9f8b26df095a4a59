"""Context of report/results.html.j2: every run's test metrics with their intervals, the spread
over seeds, accuracy per source, external false-positive rates and misclassified images."""

from __future__ import annotations

import pandas as pd

from cxr.report.formatting import metric_text, num, pct_est
from cxr.report.summary import HEADLINE


def misclassified(predictions: pd.DataFrame, threshold: float, limit: int = 5) -> dict:
    """Test images on the wrong side of the threshold, most confident first."""
    test = predictions[predictions["split"] == "test"]
    wrong = test[(test["probability"] >= threshold).astype(int) != test["label"]]
    wrong = wrong.assign(margin=(wrong["probability"] - threshold).abs())
    wrong = wrong.sort_values(["margin", "id"], ascending=[False, True])
    rows = wrong[["id", "patient", "source", "label", "probability"]].head(limit)
    return {"count": len(wrong), "n": len(test), "rows": rows.to_dict("records")}


def metric_table(runs: list[dict], labels: dict) -> dict:
    """All of cxr.metrics.binary_metrics, one column per run, formatted 'value (lo-hi)'."""
    pos, neg = labels["positive"], labels["negative"]

    def boot_ci(metric: dict) -> dict:
        return {"value": metric["value"], "ci95": metric.get("ci95_patient_bootstrap")}

    def cm(m: dict) -> str:
        c = m["confusion_matrix"]
        return f"TP {c['tp']} · FP {c['fp']} · FN {c['fn']} · TN {c['tn']}"

    spec = [
        ("test images", "", lambda m: str(m["n"])),
        ("test patients", "", lambda m: str(m["n_patients"])),
        (f"{pos} / {neg} images", "", lambda m: f"{m['n_positive']} / {m['n_negative']}"),
        ("confusion matrix", f"positive = {pos}", cm),
        ("accuracy", "Wilson", lambda m: metric_text(m["accuracy"])),
        ("accuracy", "patient bootstrap", lambda m: metric_text(boot_ci(m["accuracy"]))),
        ("sensitivity", f"{pos} found; Wilson", lambda m: metric_text(m["sensitivity"])),
        ("specificity", f"{neg} cleared; Wilson", lambda m: metric_text(m["specificity"])),
        ("PPV", "precision; Wilson", lambda m: metric_text(m["ppv"])),
        ("NPV", "Wilson", lambda m: metric_text(m["npv"])),
        ("F1", "patient bootstrap", lambda m: metric_text(m["f1"])),
        ("ROC AUC", "patient bootstrap", lambda m: metric_text(m["roc_auc"])),
        ("Brier score", "lower is better", lambda m: num(m["brier"], 3)),
        ("calibration error", "ECE, 10 bins", lambda m: num(m["calibration_error"], 3)),
        ("log loss", "", lambda m: num(m["loss"], 3)),
        ("threshold", f"P({pos}) ≥ threshold", lambda m: num(m["threshold"], 2)),
    ]
    rows = [
        {"label": label, "note": note, "cells": [fn(r["test"]) for r in runs]}
        for label, note, fn in spec
    ]
    return {"columns": [r["name"] for r in runs], "rows": rows}


def seed_spread(summary: dict) -> dict:
    """eval/summary.json as rows: mean, SD and range over seeds per architecture and metric."""
    names = dict(HEADLINE) | {"f1": "F1"}
    keys = [k for k in names if any(k in entry for entry in summary.values())]
    for entry in summary.values():
        keys += sorted(k for k in entry if k.startswith("external_fpr_") and k not in keys)
    rows = []
    for arch, entry in summary.items():
        cells = []
        for key in keys:
            s = entry.get(key) or {}
            if s.get("mean") is None:
                cells.append({"mean": "n/a", "range": ""})
            else:
                cells.append(
                    {
                        "mean": f"{s['mean']:.2f} ± {s['sd']:.2f}",
                        "range": f"{s['min']:.2f}-{s['max']:.2f}",
                    }
                )
        rows.append({"arch": arch, "n_seeds": len(entry.get("seeds", [])), "cells": cells})
    columns = [names.get(k) or f"external FPR, {k.removeprefix('external_fpr_')}" for k in keys]
    return {"columns": columns, "rows": rows}


# What the share of positive calls measures on a set of one class (or both).
CALL_MEANING = {
    "negative": "false-positive rate",
    "positive": "sensitivity",
    "both": "share called positive (both classes: see Generalisation)",
}


def external_rows(runs: list[dict]) -> list[dict]:
    """Per run and external source: how many images it called positive, and what that share
    measures for the classes the source holds."""
    rows = []
    for run in runs:
        for source, entry in sorted(run["external"].items()):
            if entry.get("kind", "source") != "source":
                continue  # a group of sources: the Generalisation section's
            rate = entry.get("positive_call_rate")
            rows.append(
                {
                    "run": run["name"],
                    "source": source,
                    "images": entry["n"],
                    "patients": entry.get("patients"),
                    "k": rate["k"] if rate else 0,
                    "measures": CALL_MEANING.get(entry["classes"], "no images"),
                    "rate": pct_est(rate["value"], rate["ci95"]) if rate else "n/a",
                    "value": rate["value"] if rate else None,
                    "threshold": rate.get("threshold") if rate else None,
                }
            )
    return rows


def per_source_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        for source, entry in sorted(run["per_source"].items()):
            acc = entry["accuracy"]
            rows.append(
                {
                    "run": run["name"],
                    "source": source,
                    "images": acc["n"],
                    "patients": entry.get("patients"),
                    "accuracy": pct_est(acc["value"], acc["ci95"]),
                }
            )
    return rows


def in_run_order(summary: dict, runs: list[dict]) -> dict:
    """eval/summary.json with its architectures in the order of the runs, then the others."""
    order = list(dict.fromkeys(r["arch"] for r in runs)) + sorted(summary)
    return {arch: summary[arch] for arch in dict.fromkeys(order) if arch in summary}


def context(*, runs: list[dict], eval_summary: dict, labels: dict) -> dict:
    """The keys results.html.j2 shows besides the runs (see cxr.report.training)."""
    return {
        "metric_table": metric_table(runs, labels),
        "seed_spread": seed_spread(eval_summary),
        "external": external_rows(runs),
        "per_source": per_source_rows(runs),
    }
