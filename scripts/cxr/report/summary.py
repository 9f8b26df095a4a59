"""Context of report/summary.html.j2: what the models learnt from, their weights, the headline
metrics, the audit's verdicts, and a conclusion written from the measured numbers."""

from __future__ import annotations

import pandas as pd

from cxr.report.formatting import est, num

HEADLINE = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("roc_auc", "ROC AUC"),
)


def class_counts(splits: pd.DataFrame, positive: str) -> list[dict]:
    """What the models learnt from: images, patients and sources per class (train/val/test)."""
    pool = splits[splits["split"] != "external"]
    rows = [
        {
            "label": label,
            "positive": label == positive,
            "images": len(part),
            "patients": int(part["patient"].nunique()),
            "sources": sorted(part["source"].unique()),
        }
        for label, part in pool.groupby("label", sort=True)
    ]
    return sorted(rows, key=lambda r: not r["positive"])


def external_counts(splits: pd.DataFrame) -> list[dict]:
    """Per external source: its images, patients and classes (evaluated only)."""
    external = splits[splits["split"] == "external"]
    return [
        {
            "source": source,
            "images": len(part),
            "patients": int(part["patient"].nunique()),
            "labels": sorted(part["label"].unique()),
        }
        for source, part in external.groupby("source", sort=True)
    ]


def headline(runs: list[dict], summary: dict) -> list[dict]:
    """Per architecture: mean over seeds and each run's value with its 95% interval."""
    by_arch: dict[str, list[dict]] = {}
    for run in runs:
        by_arch.setdefault(run["arch"], []).append(run)
    rows = []
    for arch, arch_runs in by_arch.items():
        cells = []
        for key, _ in HEADLINE:
            per_run = []
            for run in arch_runs:
                metric = run["test"][key]
                ci = metric.get("ci95_patient_bootstrap") or metric.get("ci95")
                per_run.append({"seed": run["seed"], "text": est(metric["value"], ci)})
            mean = (summary.get(arch, {}).get(key) or {}).get("mean")
            cells.append({"mean": num(mean), "runs": per_run})
        rows.append({"arch": arch, "seeds": [r["seed"] for r in arch_runs], "cells": cells})
    return rows


def _repeated_sentences(repeated: dict | None) -> list[str]:
    """The optimism over repeated splits, per architecture, and what the data can tell."""
    if not repeated:
        return []
    accuracy = [
        (row["arch"], metric, row["paired"])
        for row in repeated["rows"]
        for metric in row["metrics"]
        if metric["key"] == "accuracy" and metric["optimism_value"] is not None
    ]
    if not accuracy:
        return []
    per_arch = "; ".join(f"{arch} {metric['optimism']}" for arch, metric, _ in accuracy)
    told = [arch for arch, metric, _ in accuracy if metric["verdict"] != "cannot tell"]
    paired = min(k for _, _, k in accuracy)
    text = (
        f"Over {paired} repeated splits, the article's protocol changes accuracy by a mean of "
        f"(points, 95% interval) {per_arch}. "
    )
    if not told:
        arch, metric, _ = accuracy[0]
        text += (
            "Every interval covers 0: at this size the data cannot tell the article's leakage "
            "from the spread between splits. The article's single number is one draw: for "
            f"{arch}, accuracy {metric['article_own']} on its own split, against "
            f"{metric['article']} over splits (mean, 2.5-97.5%)."
        )
    else:
        text += (
            f"For {', '.join(told)} the interval excludes 0: the difference is larger than the "
            "spread between splits."
        )
    return [text]


def conclusion(
    summary: dict,
    reproduction_ctx: dict,
    audit: dict,
    labels: dict,
    small: dict,
    repeated: dict | None = None,
) -> list[str]:
    """Sentences of the summary's conclusion, each from measured numbers, by the question they
    answer (FINDINGS): does the article's protocol inflate the result, do the models transfer,
    what do they look at."""
    inflate: list[str] = []
    transfer: list[str] = []
    look: list[str] = []
    aucs = [
        (arch, entry["roc_auc"]["mean"])
        for arch, entry in summary.items()
        if arch != "learning_curve" and (entry.get("roc_auc") or {}).get("mean") is not None
    ]
    if aucs:
        low, high = min(v for _, v in aucs), max(v for _, v in aucs)
        span = f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"
        transfer.append(
            f"On the patient-disjoint test split ({small.get('n')} images of "
            f"{small.get('n_patients')} patients) the models reach a ROC AUC of {span}"
            + (
                f", with 95% intervals {small['auc_width']['min']:.0f}-"
                f"{small['auc_width']['max']:.0f} points wide"
                if small.get("auc_width")
                else ""
            )
            + "."
        )
    optimism = [
        m["optimism_value"]
        for row in reproduction_ctx["rows"]
        for m in row["metrics"]
        if m["name"] == "accuracy" and m["optimism_value"] is not None
    ]
    if optimism:
        leak = reproduction_ctx.get("article_leakage") or {}
        inflate.append(
            "The article's own protocol (an image-level split"
            + (
                f", {leak['test_images_whose_patient_is_in_train']} of {leak['test_images']} "
                "test images from patients also in training"
                if leak.get("test_images")
                else ""
            )
            + f") changes accuracy by {100 * min(optimism):+.0f} to {100 * max(optimism):+.0f} "
            "points against the patient-disjoint protocol."
        )
    inflate.extend(_repeated_sentences(repeated))
    test_fpr = small.get("test_fpr")
    fprs = [
        e["value"]
        for row in reproduction_ctx["rows"]
        for e in row["external"]
        if e["value"] is not None and e["classes"] == "negative"
    ]
    if fprs:
        transfer.append(
            f"On external healthy images the models call {100 * min(fprs):.0f}-"
            f"{100 * max(fprs):.0f}% {labels['positive']}, against a test-split "
            f"false-positive rate of {test_fpr['min']:.0f}-{test_fpr['max']:.0f}%."
            if test_fpr
            else f"On external healthy images the models call {100 * min(fprs):.0f}-"
            f"{100 * max(fprs):.0f}% {labels['positive']}."
        )
    verdicts = {v["check"]: v["verdict"] for v in audit.get("verdicts", [])}
    flagged = [
        c for c in ("trivial-feature probe", "border-only probe") if verdicts.get(c) == "flag"
    ]
    probes = audit.get("trivial_feature_probe") or {}, audit.get("border_probe") or {}
    aucs_text = ", ".join(
        f"{name} AUC {probe['auc']:.2f}"
        for name, probe in zip(("trivial-feature", "border-only"), probes, strict=True)
        if probe.get("auc") is not None
    )
    external_high = bool(fprs and small.get("test_fpr") and
                         100 * max(fprs) > small["test_fpr"]["max"] + 10)  # fmt: skip
    if flagged or external_high:
        look.append(
            "The leakage probes "
            + (
                f"flag the {' and '.join(flagged)} ({aucs_text})"
                if flagged
                else f"give {aucs_text}"
            )
            + ": the classes can be told apart without the lungs, so the internal numbers "
            "measure the difference between sources at least as much as disease, and do not "
            "support a diagnostic claim."
        )
    else:
        look.append(
            f"The leakage probes do not flag a shortcut ({aucs_text or 'not run'}); with a test "
            "set this small, that is absence of evidence, not evidence of a sound classifier."
        )
    return {"inflate": inflate, "transfer": transfer, "look": look}


# The summary's findings: one per question a reader brings, each linking to the section that
# shows its numbers.
FINDINGS = (
    ("inflate", "Does the article's protocol inflate the result?", "reproduction"),
    ("transfer", "Do the models transfer to new patients and hospitals?", "generalisation"),
    ("look", "What do the models look at?", "saliency"),
)


def findings(groups: dict[str, list[str]]) -> list[dict]:
    """The findings in FINDINGS' order, leaving out a question no number answers."""
    return [
        {"key": key, "question": question, "anchor": anchor, "sentences": groups[key]}
        for key, question, anchor in FINDINGS
        if groups.get(key)
    ]


def context(
    *,
    runs: list[dict],
    eval_summary: dict,
    splits: pd.DataFrame,
    split_summary: dict,
    audit: dict,
    labels: dict,
    primary_summary: dict,
    reproduction: dict | None,
    small: dict,
    generalisation: dict | None = None,
    repeated: dict | None = None,
) -> dict:
    """The keys summary.html.j2 shows; the conclusion reads the reproduction and caveats
    sections' numbers."""
    weights = sorted({r["weights"] for r in runs})
    random_weights = any(w.lower().startswith(("none", "random")) for w in weights)
    return {
        "classes": class_counts(splits, labels["positive"]),
        "external_counts": external_counts(splits),
        "weights": {"values": weights, "random": random_weights},
        "headline": headline(runs, eval_summary),
        "verdicts": audit.get("verdicts", []),
        "conclusion_groups": (
            groups := conclusion(
                primary_summary, reproduction or {"rows": []}, audit, labels, small, repeated
            )
        )
        | {"transfer": groups["transfer"] + ((generalisation or {}).get("headline") or [])},
    }
