"""Context of report/caveats.html.j2: how much a test set of this size can show, from the runs'
own numbers, and the leakage audit's findings arranged for reading."""

from __future__ import annotations

from cxr.report.data import SPLIT_ORDER
from cxr.report.figures import png_file_uri
from cxr.report.formatting import detectable_difference, width_points


def small_data_caveats(runs: list[dict], counts: dict, summary: dict) -> dict:
    """How much a test set of this size can show, from the runs' own numbers."""
    if not runs:
        return {}
    test = runs[0]["test"]
    n, n_pos, n_neg = test["n"], test["n_positive"], test["n_negative"]

    def widths(get) -> dict:
        values = [w for w in (width_points(get(r["test"])) for r in runs) if w is not None]
        return {"min": min(values), "max": max(values)} if values else None

    accuracies = [r["test"]["accuracy"]["value"] for r in runs]
    mean_acc = sum(accuracies) / len(accuracies)
    arch_means = [
        entry["accuracy"]["mean"]
        for entry in summary.values()
        if (entry.get("accuracy") or {}).get("mean") is not None
    ]
    sds = [
        entry["accuracy"]["sd"]
        for entry in summary.values()
        if (entry.get("accuracy") or {}).get("n", 0) > 1
    ]
    return {
        "n": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_patients": test["n_patients"],
        "splits": counts,
        "one_image_points": 100.0 / n if n else None,
        "one_positive_points": 100.0 / n_pos if n_pos else None,
        "one_negative_points": 100.0 / n_neg if n_neg else None,
        "accuracy_wilson_width": widths(lambda t: t["accuracy"]["ci95"]),
        "accuracy_boot_width": widths(lambda t: t["accuracy"].get("ci95_patient_bootstrap")),
        "sensitivity_width": widths(lambda t: t["sensitivity"]["ci95"]),
        "auc_width": widths(lambda t: t["roc_auc"]["ci95"]),
        "mean_accuracy": mean_acc,
        "detectable_points": 100.0 * detectable_difference(mean_acc, n)
        if n and 0 < mean_acc < 1
        else None,
        "detectable_at": mean_acc if 0 < mean_acc < 1 else None,
        "arch_range_points": 100.0 * (max(arch_means) - min(arch_means))
        if len(arch_means) > 1
        else None,
        "max_seed_sd_points": 100.0 * max(sds) if sds else None,
        **external_caveats(runs),
    }


def external_caveats(runs: list[dict]) -> dict:
    """False-positive rate on external healthy images next to the test split's (1 - spec.)."""
    healthy = [
        (name, entry)
        for r in runs
        for name, entry in r["external"].items()
        if entry.get("kind", "source") == "source" and entry.get("classes") == "negative"
    ]
    external = [entry["false_positive_rate"] for _, entry in healthy]
    values = [e["value"] for e in external if e["value"] is not None]
    test = [1 - r["test"]["specificity"]["value"] for r in runs
            if r["test"]["specificity"]["value"] is not None]  # fmt: skip
    if not values or not test:
        return {"external_fpr": None}
    sources = sorted({name for name, _ in healthy})
    return {
        "external_fpr": {"min": 100 * min(values), "max": 100 * max(values)},
        "test_fpr": {"min": 100 * min(test), "max": 100 * max(test)},
        "external_images": external[0]["n"],
        "external_sources": sources,
    }


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def leakage_caveats(audit: dict, labels: dict) -> dict:
    """The audit's numbers arranged for the caveats section."""
    counter = audit.get("image_level_counterfactual") or {}
    sources_per_label: dict[str, set] = {}
    for row in audit.get("label_source", []):
        sources_per_label.setdefault(row["label"], set()).add(row["source"])
    probe = audit.get("trivial_feature_probe") or {}
    means = probe.get("class_means", {})
    class_order = [labels["positive"], labels["negative"]]
    class_order = [c for c in class_order if c in means] + sorted(set(means) - set(class_order))
    strongest = [
        {
            "feature": f["feature"],
            "coefficient": f["coefficient"],
            "means": [means[c].get(f["feature"]) for c in class_order],
        }
        for f in probe.get("strongest_features", [])
    ]
    verdict_of = {v["check"]: v for v in audit.get("verdicts", [])}
    return {
        "counterfactual": counter,
        "leaked_patient_share": counter["patients_in_train_and_test"] / counter["patients_total"]
        if counter.get("patients_total")
        else None,
        "leaked_test_share": counter["test_images_whose_patient_is_in_train"]
        / counter["test_images"]
        if counter.get("test_images")
        else None,
        "overlap": audit.get("patient_overlap", {}),
        "near_duplicates": audit.get("near_duplicates", {}),
        "label_source": sorted(
            audit.get("label_source", []),
            key=lambda r: (r["label"] != labels["positive"], r["source"], _split_rank(r["split"])),
        ),
        "sources_per_label": {k: sorted(v) for k, v in sorted(sources_per_label.items())},
        "trivial": probe,
        "class_order": class_order,
        "strongest": strongest,
        "border": audit.get("border_probe") or {},
        "thresholds": audit.get("thresholds", {}),
        "verdict_of": verdict_of,
    }


def context(
    *,
    runs: list[dict],
    split_counts: dict,
    eval_summary: dict,
    audit: dict,
    labels: dict,
    border_examples: str | None,
) -> dict:
    """The keys caveats.html.j2 shows: small data, leakage, and the border-probe figure."""
    return {
        "small": small_data_caveats(runs, split_counts, eval_summary),
        "leakage": leakage_caveats(audit, labels),
        "border_examples": png_file_uri(border_examples) if border_examples else None,
    }
