"""Context of report/reproduction.html.j2: the protocols that ran, and per architecture the
article protocol's test metrics beside the primary (patient-disjoint) protocol's."""

from __future__ import annotations

from cxr.report.figures import png_file_uri
from cxr.report.formatting import metric_text, num, pct, pct_est, points
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


def _range_text(spread: dict) -> str:
    """'0.78 (0.65-0.90)': the mean over repeats and the 2.5-97.5 percentiles of the splits."""
    if not spread or not spread.get("n"):
        return "n/a"
    return f"{num(spread['mean'])} ({num(spread['p2_5'])}-{num(spread['p97_5'])})"


def repeats_table(repeats: dict, plot: str | None) -> dict:
    """Per architecture and metric: the article protocol's own split (repeat 0), its mean and
    range over the repeats, the patient-disjoint protocol's, the mean optimism with its
    corrected interval, the share of repeats where the article's protocol scores higher, and
    what the interval says (cxr.repeats.verdict)."""
    from cxr.repeats import verdict

    article, primary = repeats["article"], repeats["primary"]
    rows = []
    for arch, entry in repeats["architectures"].items():
        spreads = entry.get("spread", {})
        optimism = entry.get("optimism") or {}
        metrics = []
        for key in repeats["compared"]:
            own = (spreads.get(article) or {}).get(key) or {}
            mine = (spreads.get(primary) or {}).get(key) or {}
            diff = optimism.get(key) or {}
            metrics.append(
                {
                    "name": METRIC_NAMES[key],
                    "key": key,
                    "article_own": num(own.get("own_split")),
                    "article": _range_text(own),
                    "primary": _range_text(mine),
                    "optimism": points(diff) if diff else "n/a",
                    "optimism_value": diff.get("value"),
                    "higher": pct(diff.get("share_article_higher")),
                    "verdict": verdict(diff) if diff else "n/a",
                }
            )
        rows.append({"arch": arch, "paired": entry.get("paired_repeats", 0), "metrics": metrics})
    return {
        "article": article,
        "primary": primary,
        "repeats": repeats.get("repeats", {}),
        "ratio": repeats.get("test_train_ratio"),
        "rows": rows,
        "plot": png_file_uri(plot) if plot else None,
    }


def context(
    *,
    comparison: dict | None,
    protocols: list[dict],
    primary: str,
    repeats: dict | None = None,
    repeats_plot: str | None = None,
) -> dict:
    """The keys reproduction.html.j2 shows; `comparison` is compare_protocols' output (None
    when there is none), `repeats` assess_repeats' (None without repeated splits)."""
    return {
        "primary": primary,
        "protocols": protocols,
        "reproduction": comparison_table(comparison, protocols) if comparison else None,
        "repeated": repeats_table(repeats, repeats_plot) if repeats else None,
    }
