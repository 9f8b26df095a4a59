"""Context of report/generalisation.html.j2 and of the summary's internal-vs-external table:
rule assess_generalisation's table per architecture, as text with intervals and gaps."""

from __future__ import annotations

from cxr.report.figures import png_file_uri
from cxr.report.formatting import metric_text, points

COLUMNS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("ppv", "PPV"),
    ("npv", "NPV"),
    ("roc_auc", "ROC AUC"),
)
# The summary's short form: the headline metrics.
SUMMARY_COLUMNS = ("accuracy", "sensitivity", "specificity", "roc_auc")
CLASSES = {"both": "both classes", "positive": "{pos} only", "negative": "{neg} only",
           "none": "no images"}  # fmt: skip


def _cell(row: dict, key: str) -> dict:
    metric = (row.get("metrics") or {}).get(key)
    if not metric:
        return {"text": "–", "gap": "", "why": row.get("note", "")}
    gap = (row.get("gap") or {}).get(key)
    return {
        "text": metric_text(metric) if metric.get("value") is not None else "n/a",
        "gap": points(gap) if gap else "",
        "gap_value": gap.get("value") if gap else None,
        "why": metric.get("why", ""),
    }


def table_rows(entry: dict, labels: dict, keys=tuple(k for k, _ in COLUMNS)) -> list[dict]:
    """One row per set (internal test first): its classes, size and the cells of `keys`."""
    classes = {
        k: v.format(pos=labels["positive"], neg=labels["negative"]) for k, v in CLASSES.items()
    }
    return [
        {
            "set": row["set"],
            "kind": row["kind"],
            "sources": ", ".join(row["sources"]),
            "classes": classes.get(row["classes"], row["classes"]),
            "n": row["n"],
            "patients": row["patients"],
            "note": row.get("note", ""),
            "cells": [_cell(row, key) for key in keys],
        }
        for row in entry["rows"]
    ]


def headline(result: dict, labels: dict) -> list[str]:
    """Sentences for the summary's conclusion: per both-class external set, ROC AUC against the
    internal test's with the gap; per empty set, that it is empty."""
    sentences = []
    names = {}
    for arch, entry in result["architectures"].items():
        for row in entry["rows"][1:]:
            names.setdefault(row["set"], []).append((arch, entry["rows"][0], row))
    for name, per_arch in names.items():
        first = per_arch[0][2]
        if not first["n"]:
            sentences.append(
                f"The external set {name} ({', '.join(first['sources'])}) is empty: curation "
                "excluded every one of its images (see Data), so it tests nothing."
            )
            continue
        if first["classes"] != "both":
            continue
        parts = []
        for arch, internal, row in per_arch:
            auc, gap = row["metrics"]["roc_auc"], (row.get("gap") or {}).get("roc_auc")
            parts.append(
                f"{arch} {metric_text(auc)} against {metric_text(internal['metrics']['roc_auc'])}"
                f" internally (gap {points(gap)} points)"
            )
        sentences.append(
            f"On the external set {name} ({first['n']} images of {first['patients']} patients, "
            f"both classes, from {', '.join(first['sources'])}, never trained on) the ROC AUC is: "
            + "; ".join(parts)
            + "."
        )
    return sentences


def context(*, generalisation: dict | None, plot: str | None, labels: dict) -> dict:
    """The keys generalisation.html.j2 (and the summary) show; None when the rule did not run."""
    if not generalisation:
        return {"generalisation": None}
    archs = [
        {
            "arch": arch,
            "run": entry["run"],
            "rows": table_rows(entry, labels),
            "summary_rows": table_rows(entry, labels, SUMMARY_COLUMNS),
        }
        for arch, entry in generalisation["architectures"].items()
    ]
    has_external = any(len(a["rows"]) > 1 for a in archs)
    return {
        "generalisation": {
            "protocol": generalisation["protocol"],
            "columns": [name for _, name in COLUMNS],
            "summary_columns": [dict(COLUMNS)[k] for k in SUMMARY_COLUMNS],
            "archs": archs,
            "has_external": has_external,
            "plot": png_file_uri(plot) if plot and has_external else None,
            "headline": headline(generalisation, labels),
        }
    }
