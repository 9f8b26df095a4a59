"""Did a rerun reproduce the published numbers? The quantities a finished run is judged by
(curation and split counts, each run's headline metrics with their intervals, the external
sources' positive-call rates, the probes' AUCs, the saliency maps' border shares), measured from
the run's own JSON files into one flat table (`measure`); an expected file that holds them with a
tolerance per quantity and context, and why (`expected_file`); and the comparison (`compare`),
one row per quantity with its verdict. Plain JSON, no TensorFlow.

Contexts: `same_machine` expects the same bytes (every job is deterministic on one machine:
docs/facts.md), so every tolerance is 0; `other_cpu` allows what another CPU's floating-point
kernels change (TensorFlow dispatches other oneDNN and Eigen code per instruction set, which
changes the last bits of every feature and of every head's fit, and a call near the threshold can
flip); `gpu` allows more (cuDNN kernels are not bit-reproducible run to run)."""

from __future__ import annotations

from dataclasses import dataclass

CONTEXTS = ("same_machine", "other_cpu", "gpu")
METRICS = ("accuracy", "sensitivity", "specificity", "roc_auc")
SALIENCY_METHODS = ("gradcam", "occlusion")

# Why each kind of quantity gets its tolerance; the numbers are per quantity (rates scale with
# the images behind them). Declared from how each is computed: the other_cpu and gpu values are
# not yet measured on another CPU or a GPU, and a run there that fails by a little is first a
# reason to measure them.
WHY = {
    "count": "curation, splits and their counts are pure Python and NumPy on the same files: a "
    "different count means different inputs or code, on any machine",
    "rate": "a rate over n images moves by 1/n per image whose call flips; another CPU's or a "
    "GPU's last bits flip calls near the threshold: 2 images' worth on another CPU, 3 on a GPU",
    "auc": "a ROC AUC moves by 1/(n_pos x n_neg) per pair of scores that swap order; allowed: "
    "0.05 on another CPU, 0.08 on a GPU",
    "probe": "the trivial-feature probe is scikit-learn on integer-valued image statistics and "
    "the border probe a logistic regression on a base's features: 0.02 on another CPU, 0.04 on "
    "a GPU",
    "share": "a mean share of attribution over the mapped images; another CPU moves the maps' "
    "last bits and the calls they explain: 0.02 on another CPU, 0.05 on a GPU",
}


def tolerance(kind: str, n: int | None = None) -> dict[str, float]:
    """The tolerance of a quantity of `kind` (over `n` images, for rates) per context."""
    if kind == "count":
        return dict.fromkeys(CONTEXTS, 0)
    if kind == "rate":
        n = max(int(n or 1), 1)
        return {"same_machine": 0, "other_cpu": round(2 / n, 4), "gpu": round(3 / n, 4)}
    fixed = {"auc": (0.05, 0.08), "probe": (0.02, 0.04), "share": (0.02, 0.05)}[kind]
    return {"same_machine": 0, "other_cpu": fixed[0], "gpu": fixed[1]}


# --------------------------------------------------------------------------- measure


def _add(table: dict, name: str, value, kind: str, n: int | None = None) -> None:
    if value is None:
        return
    table[name] = {"value": value, "kind": kind, **({"n": int(n)} if n is not None else {})}


def _metric(table: dict, prefix: str, metric: str, cell: dict, n: int) -> None:
    kind = "auc" if metric == "roc_auc" else "rate"
    _add(table, f"{prefix}.{metric}", cell.get("value"), kind, n)
    if cell.get("ci95"):
        _add(table, f"{prefix}.{metric}.ci95_low", cell["ci95"][0], kind, n)
        _add(table, f"{prefix}.{metric}.ci95_high", cell["ci95"][1], kind, n)


def measure(
    *,
    flow: dict,
    split_summaries: dict[str, dict],
    evaluations: list[tuple[dict, dict]],
    audit: dict,
    saliency: list[tuple[dict, dict]],
) -> dict:
    """The run's quantities by name, each with its value and kind: `evaluations` and `saliency`
    are (entry, JSON) pairs, entry naming the protocol, architecture and run."""
    table: dict = {}
    for key in ("total", "included", "excluded"):
        _add(table, f"curation.{key}", flow[key], "count")
    for source, counts in sorted(flow["sources"].items()):
        _add(table, f"curation.{source}.included", counts["included"], "count")
    for protocol, summary in split_summaries.items():
        for split, counts in sorted(summary["counts"].items()):
            _add(table, f"split.{protocol}.{split}.images", counts["images"], "count")
            _add(table, f"split.{protocol}.{split}.patients", counts["patients"], "count")
    for entry, result in evaluations:
        prefix = f"{entry['protocol']}.{entry['architecture']}.{entry['run']}"
        test = result["test"]
        for metric in METRICS:
            n = test["n_positive"] if metric == "sensitivity" else (
                test["n_negative"] if metric == "specificity" else test["n"]
            )  # fmt: skip
            _metric(table, f"{prefix}.test", metric, test[metric], n)
        for name, external in sorted(result.get("external", {}).items()):
            rate = external.get("positive_call_rate") or {}
            _metric(table, f"{prefix}.external.{name}", "positive_call_rate", rate, external["n"])
    for check in ("trivial_feature_probe", "border_probe"):
        _add(table, f"audit.{check}.auc", (audit.get(check) or {}).get("auc"), "probe")
    for entry, statistics in saliency:
        prefix = f"saliency.{entry['protocol']}.{entry['architecture']}.{entry['run']}"
        for method in SALIENCY_METHODS:
            groups = statistics["summary"][method]["groups"]
            overall = next((g for g in groups if g["by"] == "all test images"), None)
            if overall:
                _add(table, f"{prefix}.{method}.border_share",
                     overall["shares"]["border"]["mean"], "share")  # fmt: skip
    return table


# --------------------------------------------------------------------------- expected


def expected_file(measured: dict, *, dataset: str, written_from: dict) -> dict:
    """What `expected/<dataset>.json` holds: every measured quantity with its tolerance per
    context, the reasons, and where the values were measured (commit, CPU)."""
    return {
        "dataset": dataset,
        "written_from": written_from,
        "contexts": {
            "same_machine": "the machine the values were measured on: the same bytes",
            "other_cpu": "another CPU model (other instruction sets, other kernels)",
            "gpu": "a GPU (kernels not bit-reproducible)",
        },
        "why": WHY,
        "quantities": {
            name: {**q, "tolerance": tolerance(q["kind"], q.get("n"))}
            for name, q in sorted(measured.items())
        },
    }


# --------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class Row:
    name: str
    value: float | None
    expected: float | None
    tolerance: float | None
    verdict: str  # pass | differs | missing (expected, not measured) | new (measured only)


def compare(expected: dict, measured: dict, context: str) -> list[Row]:
    """One row per quantity of either table: `pass` within the context's tolerance, `differs`
    beyond it, `missing` where the run lacks an expected quantity, `new` where the expected
    file lacks a measured one (a new quantity: write a new expected file)."""
    if context not in CONTEXTS:
        raise ValueError(f"context {context!r}: use one of {', '.join(CONTEXTS)}")
    rows = []
    wanted = expected["quantities"]
    for name in sorted(set(wanted) | set(measured)):
        if name not in measured:
            rows.append(Row(name, None, wanted[name]["value"], None, "missing"))
            continue
        value = measured[name]["value"]
        if name not in wanted:
            rows.append(Row(name, value, None, None, "new"))
            continue
        target, allowed = wanted[name]["value"], wanted[name]["tolerance"][context]
        verdict = "pass" if abs(value - target) <= allowed + 1e-12 else "differs"
        rows.append(Row(name, value, target, allowed, verdict))
    return rows


def failed(rows: list[Row]) -> list[Row]:
    """The rows that make a verification fail: differences and expected quantities the run
    lacks (a new quantity alone does not: the expected file predates it)."""
    return [r for r in rows if r.verdict in ("differs", "missing")]


def table_text(rows: list[Row], *, only_problems: bool = False) -> str:
    """The comparison as aligned text: quantity, value, expected, tolerance, verdict."""

    def cell(v) -> str:
        if v is None:
            return "-"
        return f"{v:d}" if isinstance(v, int) else f"{v:.4f}"

    shown = [r for r in rows if r.verdict != "pass"] if only_problems else rows
    header = ("quantity", "value", "expected", "tolerance", "verdict")
    lines = [(r.name, cell(r.value), cell(r.expected), cell(r.tolerance), r.verdict) for r in shown]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" if k == 0 else f"{{:>{w}}}" for k, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in (header, *lines))
