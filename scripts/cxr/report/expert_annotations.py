"""Context of what the collection's expert annotations measure (their counts are the Data
section's, cxr.report.data): attention on the lungs and the model randomisation check per
explained run, and whether the scores follow the experts' severity scores
(report/saliency.html.j2), and the conclusion's sentences on them."""

from __future__ import annotations

from pathlib import Path

from cxr.io import read_json
from cxr.severity import SCORES

LUNG_GROUPS_SHOWN = ("all annotated images", "split", "source", "outcome")


def lungs_section(lungs: dict | None, randomised: dict | None) -> dict:
    """One explained run: per method, the lung-attention groups and verdict, and the
    randomisation summary."""
    methods = {}
    for method in ("gradcam", "occlusion"):
        entry = (lungs or {}).get("methods", {}).get(method) or {"groups": [], "verdict": None}
        groups = [g for g in entry["groups"] if g["by"] in LUNG_GROUPS_SHOWN]
        methods[method] = {
            "verdict": entry["verdict"],
            "overall": next((g for g in groups if g["by"] == "all annotated images"), None),
            "groups": groups,
            "randomisation": ((randomised or {}).get("methods") or {}).get(method),
        }
    return {
        "images": (lungs or {}).get("images", 0),
        "patients": (lungs or {}).get("patients", 0),
        "rule": (lungs or {}).get("rule"),
        "methods": methods,
        "randomisation_sample": (randomised or {}).get("sample"),
    }


def severity_context(severity: dict | None, plot: str | Path | None) -> dict | None:
    """Per architecture and subset, rho with its interval for each score, and the verdict."""
    if severity is None:
        return None
    archs = []
    for arch, entry in severity["architectures"].items():
        archs.append({
            "architecture": arch, "run": entry["run"], "verdict": entry["verdict"],
            "rule": entry["rule"], "subsets": entry["subsets"],
            "scored": len(entry["images"]),
        })  # fmt: skip
    from cxr.report.figures import png_data_uri

    return {
        "scores": SCORES,
        "subsets": severity["subsets"],
        "architectures": archs,
        "min_images": severity["min_images"],
        "plot": png_data_uri(Path(plot).read_bytes()) if plot and archs else None,
        "scored": max((a["scored"] for a in archs), default=0),
    }


def context(inputs: dict) -> dict:
    """The keys `lungs` (per explained run, in the order of inputs['saliency']) and
    `severity`, which the saliency section shows."""
    lungs = [read_json(p) for p in inputs.get("lung_attention", [])]
    randomised = [read_json(p) for p in inputs.get("randomisation", [])]
    return {
        "lungs": [
            lungs_section(a, b)
            for a, b in zip(lungs, randomised or [None] * len(lungs), strict=True)
        ],
        "severity": severity_context(
            read_json(inputs["severity"]) if inputs.get("severity") else None,
            inputs.get("severity_plot"),
        ),
    }


def conclusion(annotations: dict, lungs: list[dict], runs: list[dict], severity: dict | None):
    """Sentences for the summary's conclusion, from the measured verdicts."""
    if not annotations.get("configured"):
        return []
    sentences = []
    looked = []
    for run, section in zip(runs, lungs, strict=False):
        occlusion = section["methods"]["occlusion"]
        if occlusion["overall"] and occlusion["overall"]["share"]["mean"] is not None:
            share, area = (
                occlusion["overall"]["share"]["mean"],
                occlusion["overall"]["area"]["mean"],
            )
            looked.append(
                f"{run['architecture']} {100 * share:.0f}% against {100 * area:.0f}% "
                f"({occlusion['verdict']})"
            )
    if looked:
        sentences.append(
            "On the images the experts drew the lungs on, the share of occlusion attribution "
            "inside the lungs against the lungs' share of the image is " + "; ".join(looked) + "."
        )
    barely = [
        f"{run['architecture']} {meth}"
        for run, section in zip(runs, lungs, strict=False)
        for meth, entry in section["methods"].items()
        if (entry["randomisation"] or {}).get("verdict") == "maps barely change"
    ]
    if barely:
        sentences.append(
            "The maps of " + ", ".join(barely) + " barely change when the head's weights are "
            "randomised: they say more about the images than about what the model learned."
        )
    if severity and severity["architectures"]:
        verdicts = [f"{a['architecture']}: {a['verdict']}" for a in severity["architectures"]]
        sentences.append(
            f"Against the experts' severity scores of {severity['scored']} COVID-19 images, "
            "the models' scores give " + "; ".join(verdicts) + " (Spearman, patient bootstrap)."
        )
    return sentences
