"""Context of report/reproduction.html.j2: the protocols that ran, and per architecture the
article protocol's test metrics beside the primary (patient-disjoint) protocol's."""

from __future__ import annotations

from cxr.report.formatting import metric_text, pct_est, points
from cxr.report.summary import HEADLINE

METRIC_NAMES = dict(HEADLINE)


def _external_text(external: dict) -> list[dict]:
    """Share of each external source's images called positive: its false-positive rate when it
    holds healthy images only, its sensitivity when disease images only."""
    rows = []
    for source, entry in sorted(external.items()):
        rate = entry.get("positive_call_rate")
        if entry.get("kind", "source") != "source" or rate is None:
            continue
        rows.append({"source": source, "fpr": pct_est(rate["value"], rate["ci95"]),
                     "n": rate["n"], "value": rate["value"],
                     "classes": entry["classes"]})  # fmt: skip
    return rows


def comparison_table(comparison: dict, protocols: list[dict]) -> dict:
    """Per architecture: the article protocol's test metrics, the primary (patient-disjoint)
    ones, the external false-positive rates, and the article's optimism in points."""
    article, primary = comparison["article"], comparison["primary"]
    ran = {p["name"] for p in protocols}
    rows = []
    for arch, entry in comparison["architectures"].items():
        metrics = [
            {
                "name": METRIC_NAMES[key],
                "article": metric_text((entry.get("article") or {}).get(key)),
                "primary": metric_text(entry["primary"].get(key)),
                "optimism": points((entry.get("optimism") or {}).get(key)),
                "optimism_value": ((entry.get("optimism") or {}).get(key) or {}).get("value"),
            }
            for key in comparison["compared"]
        ]
        rows.append(
            {
                "arch": arch,
                "article_run": entry.get("article_run"),
                "primary_run": entry.get("primary_run"),
                "metrics": metrics,
                "external": _external_text(entry.get("external") or {}),
            }
        )
    leak = comparison.get("split_leakage", {})
    return {
        "article": article,
        "primary": primary,
        "article_ran": article in ran,
        "rows": rows,
        "article_leakage": leak.get(article),
        "primary_leakage": leak.get(primary),
        "protocols": protocols,
    }


def context(*, comparison: dict | None, protocols: list[dict], primary: str) -> dict:
    """The keys reproduction.html.j2 shows; `comparison` is compare_protocols' output (None
    when there is none)."""
    return {
        "primary": primary,
        "protocols": protocols,
        "reproduction": comparison_table(comparison, protocols) if comparison else None,
    }
