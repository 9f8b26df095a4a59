"""The reproduction table: the article's own protocol beside the patient-disjoint one and the
external test, per architecture, and how much the article's protocol overstates (in points,
with a bootstrap interval)."""

from __future__ import annotations

import pandas as pd

from cxr import metrics

COMPARED = ("accuracy", "sensitivity", "specificity", "roc_auc")


def first_runs(runs: list[dict], protocol: str) -> dict[str, dict]:
    """Per architecture, the protocol's run with the lowest seed (full training set)."""
    chosen: dict[str, dict] = {}
    for run in runs:
        ev = run["evaluation"]
        if ev["protocol"] != protocol or ev.get("train_fraction") not in (None, 1.0):
            continue
        arch = ev["architecture"]
        if arch not in chosen or ev["seed"] < chosen[arch]["evaluation"]["seed"]:
            chosen[arch] = run
    return chosen


def _test_arrays(predictions: pd.DataFrame):
    test = predictions[predictions["split"] == "test"]
    return test["label"].to_numpy(), test["probability"].to_numpy(), test["patient"].to_numpy()


def _metric(test: dict, name: str) -> dict:
    metric = test[name]
    ci = metric.get("ci95_patient_bootstrap") if name == "accuracy" else None
    return {"value": metric["value"], "ci95": ci or metric.get("ci95")}


def compare_protocols(
    runs: list[dict],
    split_summaries: list[dict],
    *,
    article: str,
    primary: str,
    threshold: float,
    n_boot: int,
    seed: int,
) -> dict:
    """`runs`: {"evaluation": eval JSON, "predictions": DataFrame} for every compared run."""
    leakage = {
        s["protocol"]: {
            "patients_in_several_splits": s.get("patients_in_several_splits"),
            "test_images_whose_patient_is_in_train": s.get("test_images_whose_patient_is_in_train"),
            "test_images": (s.get("counts", {}).get("test") or {}).get("images"),
            "method": s.get("method"),
        }
        for s in split_summaries
    }
    result = {
        "article": article,
        "primary": primary,
        "compared": list(COMPARED),
        "threshold": threshold,
        "split_leakage": leakage,
        "architectures": {},
    }
    ours, theirs = first_runs(runs, primary), first_runs(runs, article)
    stats = metrics.statistics(threshold)
    for arch in ours:
        entry: dict = {"primary_run": ours[arch]["evaluation"]["run"]}
        primary_test = ours[arch]["evaluation"]["test"]
        entry["primary"] = {name: _metric(primary_test, name) for name in COMPARED}
        entry["external"] = ours[arch]["evaluation"].get("external", {})
        if arch in theirs:
            article_test = theirs[arch]["evaluation"]["test"]
            entry["article_run"] = theirs[arch]["evaluation"]["run"]
            entry["article"] = {name: _metric(article_test, name) for name in COMPARED}
            entry["article_external"] = theirs[arch]["evaluation"].get("external", {})
            a = _test_arrays(theirs[arch]["predictions"])
            b = _test_arrays(ours[arch]["predictions"])
            entry["optimism"] = {
                name: metrics.bootstrap_difference(a, b, stats[name], n_boot=n_boot, seed=seed)
                for name in COMPARED
            }
        result["architectures"][arch] = entry
    return result
