"""Context of report/saliency.html.j2: where each architecture's model looks. Per explained
run: the images mapped and those the bound on external images left out, overlays of a few
images per outcome (a fixed rule), the mass shares per group with intervals against the share
of area, the pointing game where ground truth exists, the verdict line, and the time spent."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cxr.io import read_json
from cxr.report.figures import png_data_uri
from cxr.saliency import METHODS, REGIONS

# Outcomes shown as overlays: what a reader checks first (disease calls, right or wrong, and
# healthy external adults called disease), then the misses.
OVERLAY_OUTCOMES = ("TP", "FP", "external FP", "FN")
METHOD_NAMES = {"gradcam": "Grad-CAM", "occlusion": "occlusion"}
REGION_NAMES = {
    "central": "central region",
    "border": "border strip",
    "top_left": "top-left corner",
    "top_right": "top-right corner",
}


def chosen_overlays(images: list[dict], per_outcome: int) -> list[dict]:
    """The fixed rule: per outcome, the `per_outcome` most confident calls (highest
    P(disease) for disease calls, lowest for misses), ties broken by id."""
    picks = []
    for outcome in OVERLAY_OUTCOMES:
        rows = [r for r in images if r["outcome"] == outcome]
        sign = 1.0 if outcome == "FN" else -1.0
        rows.sort(key=lambda r: (sign * r["probability"], r["id"]))
        picks.extend(rows[:per_outcome])
    return picks


def overlay_uri(
    statistics: dict, maps_path: str | Path, picks: list[dict], lungs: dict | None = None
) -> str | None:
    """The picked images with their two maps, drawn by cxr.plots into a data: URI; the lungs'
    outline where the annotations draw them (`lungs`: image id -> mask)."""
    if not picks:
        return None
    from cxr import plots  # matplotlib is slow to import; only needed here

    with np.load(maps_path, allow_pickle=False) as arrays:
        where = {image_id: k for k, image_id in enumerate(arrays["ids"].tolist())}
        panels = []
        for row in picks:
            k = where[row["id"]]
            panels.append({
                "image": arrays["images"][k],
                "gradcam": arrays["gradcam"][k].astype(np.float32),
                "occlusion": arrays["occlusion"][k].astype(np.float32),
                "gradcam_peak": arrays["gradcam_peaks"][k],
                "occlusion_peak": arrays["occlusion_peaks"][k],
                "lungs": (lungs or {}).get(row["id"]),
                "label": f"{row['outcome']}: {row['id']}\n{row['source']}, "
                         f"P(disease) {row['probability']:.2f}",
            })  # fmt: skip
    title = f"{statistics['architecture']} ({statistics['protocol']}, {statistics['run']})"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "overlays.png"
        plots.saliency_overlays(panels, path, title=title)
        return png_data_uri(path.read_bytes())


def _share(cell: dict) -> dict:
    return {"mean": cell["mean"], "ci95": cell["ci95"], "n": cell["n"]}


def mapped_images(selection: dict) -> dict:
    """The images mapped, per split, and the groups (source and class) that the bound on
    external images cut, from the statistics' `selection` (cxr.saliency.selection)."""
    groups = selection["groups"]
    return {
        "mapped": selection["mapped"],
        "images": selection["images"],
        "left_out": selection["left_out"],
        "test": sum(g["mapped"] for g in groups if g["split"] == "test"),
        "external": sum(g["mapped"] for g in groups if g["split"] == "external"),
        "bound": selection["external_per_source"],
        "cut": [g for g in groups if g["left_out"]],
    }


def cost(record: dict | None) -> dict | None:
    """Seconds per image of each method, from a run's .saliency.cost.json (None without)."""
    if not record:
        return None
    return {"images": record["images"], "per_image": record["seconds_per_image"]}


def run_section(
    statistics: dict,
    maps_path: str | Path,
    *,
    overlays: int,
    cost_record: dict | None = None,
    lungs: dict | None = None,
) -> dict:
    """One architecture's images, overlays, tables, pointing game, verdicts and cost."""
    area = statistics["regions"]["area_share"]
    methods = []
    for method in METHODS:
        summary = statistics["summary"][method]
        verdict = summary.get("verdict") or {"verdict": "not computed", "rule": ""}
        overall = next((g for g in summary["groups"] if g["by"] == "all test images"), None)
        border = overall["shares"]["border"] if overall else None
        methods.append({
            "method": method,
            "name": METHOD_NAMES[method],
            "description": statistics["methods"][method]["description"],
            "cells": statistics["methods"][method]["cells"],
            "verdict": verdict,
            "border": border,
            "groups": [
                {"by": g["by"], "value": g["value"], "images": g["images"],
                 "patients": g["patients"],
                 "shares": {r: _share(g["shares"][r]) for r in REGIONS}}
                for g in summary["groups"]
            ],
            "pointing_game": summary.get("pointing_game"),
        })  # fmt: skip
    picks = chosen_overlays(statistics["images"], overlays)
    return {
        "architecture": statistics["architecture"],
        "run": statistics["run"],
        "protocol": statistics["protocol"],
        "area": area,
        "methods": methods,
        "overlays": overlay_uri(statistics, maps_path, picks, lungs),
        "n_overlays": len(picks),
        "ground_truth": statistics.get("ground_truth"),
        "selection": mapped_images(statistics["selection"]),
        "cost": cost(cost_record),
    }


def context(
    *,
    statistics: list[str | Path],
    maps: list[str | Path],
    overlays: int,
    costs: list[str | Path] | None = None,
    lungs: str | Path | None = None,
) -> dict:
    """The key saliency.html.j2 shows; `statistics[i]`, `maps[i]` and `costs[i]` (seconds
    spent; optional) describe one run; `lungs` is the annotations' lung masks (.npz)."""
    costs = costs or [None] * len(statistics)
    masks = {}
    if lungs:
        with np.load(lungs) as stored:
            masks = dict(zip(stored["ids"].tolist(), stored["masks"], strict=True))
    runs = [
        run_section(
            read_json(s),
            m,
            overlays=overlays,
            cost_record=read_json(c) if c else None,
            lungs=masks,
        )  # fmt: skip
        for s, m, c in zip(statistics, maps, costs, strict=True)
    ]
    first = read_json(statistics[0]) if statistics else None
    return {
        "saliency": {
            "runs": runs,
            "regions": first["regions"] if first else None,
            "explains": first["explains"] if first else None,
            "method_names": METHOD_NAMES,
            "region_names": REGION_NAMES,
            "regions_order": list(REGIONS),
            "overlay_outcomes": list(OVERLAY_OUTCOMES),
            "per_outcome": overlays,
        }
    }
