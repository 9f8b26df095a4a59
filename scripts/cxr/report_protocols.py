"""Context of the report's protocol sections (reproduction.html.j2, learning_curve.html.j2,
marks.html.j2), the conclusion of the summary, and the facts of the CLAIM checklist: each
builder takes the workflow's outputs as plain values and returns what its template shows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr.report.figures import crop_uri
from cxr.report.formatting import est, num, pct_est, points

METRIC_NAMES = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "ROC AUC",
}


def _metric(entry: dict | None) -> str:
    return est(entry["value"], entry.get("ci95")) if entry else "n/a"


def _external_text(external: dict) -> list[dict]:
    rows = []
    for source, entry in sorted(external.items()):
        fpr = entry["false_positive_rate"]
        rows.append({"source": source, "fpr": pct_est(fpr["value"], fpr["ci95"]), "n": fpr["n"],
                     "value": fpr["value"]})  # fmt: skip
    return rows


def reproduction(comparison: dict, protocols: list[dict]) -> dict:
    """Per architecture: the article protocol's test metrics, the primary (patient-disjoint)
    ones, the external false-positive rates, and the article's optimism in points."""
    article, primary = comparison["article"], comparison["primary"]
    ran = {p["name"] for p in protocols}
    rows = []
    for arch, entry in comparison["architectures"].items():
        metrics = [
            {
                "name": METRIC_NAMES[key],
                "article": _metric((entry.get("article") or {}).get(key)),
                "primary": _metric(entry["primary"].get(key)),
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


def learning_curve(tables: list[pd.DataFrame], plots: list[str | None], names: list[str]):
    """One entry per learning-curve protocol: its rows and its plot."""
    curves = []
    for name, table, plot in zip(names, tables, plots, strict=True):
        rows = [
            {
                "arch": row["architecture"],
                "fraction": row["train_fraction"],
                "patients": num(row["train_patients"], 1),
                "images": num(row["train_images"], 1),
                "repeats": int(row["repeats"]),
                "auc": f"{num(row['roc_auc_mean'])} ± {num(row['roc_auc_sd'])}",
                "auc_width": num(row["roc_auc_ci_width"]),
                "accuracy": f"{num(row['accuracy_mean'])} ± {num(row['accuracy_sd'])}",
                "accuracy_width": num(row["accuracy_ci_width"]),
            }
            for row in table.to_dict("records")
        ]
        curves.append({"protocol": name, "rows": rows, "plot": plot})
    return curves


def marked_images(images: pd.DataFrame, marks: dict) -> pd.DataFrame:
    """The curated images that carry annotation marks by config's `marks` settings."""
    area = images["mark_area"].astype(float)
    coloured = area >= marks["min_area"] if marks["min_area"] > 0 else area > 0
    return images[coloured | images["id"].isin(set(marks.get("ids") or []))]


def marks_section(
    images: pd.DataFrame,
    marks: dict,
    summaries: dict[str, dict],
    removed: dict[str, pd.DataFrame],
    *,
    image_root: Path,
    limit: int = 6,
) -> dict:
    """How many images carry marks per class and source, sample crops, and the no-marks
    protocols' metrics beside the primary's."""
    marked = marked_images(images, marks)
    counts = [
        {
            "label": label,
            "source": source,
            "marked": int(len(part[part["id"].isin(marked["id"])])),
            "images": int(len(part)),
        }
        for (label, source), part in images.groupby(["label", "source"], sort=True)
    ]
    samples = []
    with_box = marked[marked["mark_box"].astype(str) != ""].sort_values(
        "mark_area", ascending=False
    )
    for row in with_box.head(limit).to_dict("records"):
        path = Path(row["path"])
        uri = crop_uri(path if path.is_absolute() else image_root / path, str(row["mark_box"]))
        if uri:
            samples.append({"id": row["id"], "label": row["label"], "uri": uri,
                            "area": f"{100 * float(row['mark_area']):.2f}%"})  # fmt: skip
    protocols = []
    for name, summary in summaries.items():
        frame = removed.get(name)
        protocols.append(
            {
                "name": name,
                "removed": 0 if frame is None else len(frame),
                "archs": {
                    arch: {
                        "auc": num((entry.get("roc_auc") or {}).get("mean")),
                        "accuracy": num((entry.get("accuracy") or {}).get("mean")),
                        "n_test": entry.get("n_test"),
                    }
                    for arch, entry in summary.items()
                    if arch != "learning_curve"
                },
            }
        )
    return {
        "settings": marks,
        "n_marked": len(marked),
        "counts": counts,
        "samples": samples,
        "protocols": protocols,
    }


def conclusion(
    summary: dict, reproduction_ctx: dict, audit: dict, labels: dict, small: dict
) -> list[str]:
    """Sentences of the summary's conclusion, each from measured numbers."""
    sentences = []
    aucs = [
        (arch, entry["roc_auc"]["mean"])
        for arch, entry in summary.items()
        if arch != "learning_curve" and (entry.get("roc_auc") or {}).get("mean") is not None
    ]
    if aucs:
        low, high = min(v for _, v in aucs), max(v for _, v in aucs)
        span = f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"
        sentences.append(
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
        sentences.append(
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
    test_fpr = small.get("test_fpr")
    fprs = [
        e["value"]
        for row in reproduction_ctx["rows"]
        for e in row["external"]
        if e["value"] is not None
    ]
    if fprs:
        sentences.append(
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
        sentences.append(
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
        sentences.append(
            f"The leakage probes do not flag a shortcut ({aucs_text or 'not run'}); with a test "
            "set this small, that is absence of evidence, not evidence of a sound classifier."
        )
    return sentences


def claim_facts(context: dict, config: dict, protocols: list[dict], images: pd.DataFrame) -> dict:
    """The facts cxr.claim.claim_checklist reads, from the report's context and config."""
    training = config.get("training") or {}
    trained = images[images["role"] == "train"]
    disease = trained[trained["label"] == context["labels"]["positive"]]
    runs = context["runs"]
    return {
        "n_images": len(trained),
        "n_patients": int(trained["patient"].nunique()),
        "sources": [
            {
                "name": s["name"],
                "label": s["label"],
                "role": s["role"],
                "licence": s.get("license") or "",
                "version": s.get("version") or "",
            }
            for s in context["sources"]
        ],  # fmt: skip
        "exclusions_logged": True,
        "flow_diagram": bool(context["flow"]["picture"]),
        "patient_disjoint": (context["leakage"]["overlap"] or {}).get(
            "patients_in_several_splits", 0
        )
        == 0,
        "protocols": [p["name"] for p in protocols],
        "split_fractions": context["split_fractions"],
        "architectures": list(dict.fromkeys(r["arch"] for r in runs)),
        "weights": "random" if context["weights"]["random"] else "imagenet",
        "epochs": int(training.get("epochs", 0)),
        "batch_size": int(training.get("batch_size", 0)),
        "learning_rate": float(training.get("learning_rate", 0)),
        "model_selection": (config.get("evaluation") or {}).get("checkpoint", "final"),
        "seeds": sorted({r["seed"] for r in runs}),
        "metrics": [
            "accuracy",
            "sensitivity",
            "specificity",
            "PPV",
            "NPV",
            "ROC AUC",
            "F1",
            "Brier",
            "ECE",
        ],  # fmt: skip
        "intervals": True,
        "external_sources": sorted({s for r in runs for s in r["external"]}),
        "external_has_both_classes": False,
        "learning_curve": bool(context.get("learning_curves")),
        "marks_checked": True,
        "n_marked": context["marks"]["n_marked"],
        "leakage_audit": True,
        "failure_analysis": any(r.get("errors") for r in runs),
        "saliency": False,
        "demographics": {
            "age_known": int((disease.get("age", pd.Series(dtype=str)).astype(str) != "").sum())
            if "age" in disease
            else 0,
            "sex_known": 0,
            "n": len(trained),
        },
        "reference_standard": "source labels: the COVID-19 collection's `finding` column "
        "(curation.disease_finding); healthy sources by folder",
        "code_available": True,
        "config_recorded": True,
    }
