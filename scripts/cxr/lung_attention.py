"""Attention on the lungs: where the collection's experts drew the lungs (cxr.annotations), how
much of a map's positive attribution falls inside them and whether its peak does (the pointing
game), each against the lungs' share of the image, which is what a map that points nowhere in
particular gives. Per group of images (all annotated ones; by split, class, source, outcome),
means with intervals that resample patients, and a verdict per method. Plain numpy, no
TensorFlow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cxr import metrics

MEASURES = ("share", "area", "excess", "hit", "hit_excess")


def fit_mask(mask: np.ndarray, side: int) -> np.ndarray:
    """A lung mask on the maps' side x side grid (nearest cell: the annotations are stored at
    the shards' size, which is the maps' size unless the maps were made at another one)."""
    mask = np.asarray(mask, bool)
    if mask.shape == (side, side):
        return mask
    rows = (np.arange(side) + 0.5) * mask.shape[0] / side
    cols = (np.arange(side) + 0.5) * mask.shape[1] / side
    return mask[rows.astype(int)][:, cols.astype(int)]


def lung_measures(maps: np.ndarray, peaks: np.ndarray, lungs: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (maps [N, H, W], peaks [N, 2] as (x, y) in [0, 1], lungs [N, H, W] bool):
    `share` of the positive mass inside the lungs (NaN for a map without positive mass),
    `area` the lungs' share of the image, `excess` = share - area, `hit` 1 where the peak lies
    in the lungs (NaN without a peak), `hit_excess` = hit - area."""
    positive = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None)
    lungs = np.asarray(lungs, bool)
    total = positive.sum(axis=(1, 2))
    inside = (positive * lungs).sum(axis=(1, 2))
    share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    area = lungs.mean(axis=(1, 2))
    side_y, side_x = lungs.shape[1:]
    hit = np.full(len(lungs), np.nan)
    for k, (x, y) in enumerate(np.asarray(peaks, dtype=float)):
        if np.isfinite(x) and np.isfinite(y):
            row, col = min(int(y * side_y), side_y - 1), min(int(x * side_x), side_x - 1)
            hit[k] = float(lungs[k, row, col])
    return {"share": share, "area": area, "excess": share - area, "hit": hit,
            "hit_excess": hit - area}  # fmt: skip


def group_summaries(
    frame: pd.DataFrame, measures: dict, *, labels: dict, n_boot: int, seed: int
) -> list[dict]:
    """Per group of the annotated images in `frame` (split, source, label, patient, outcome per
    image): each measure's mean with its interval."""
    names = {1: labels["positive"], 0: labels["negative"]}
    selections = [("all annotated images", "", np.ones(len(frame), bool))]
    for by, column in (("split", "split"), ("source", "source"), ("outcome", "outcome")):
        selections += [
            (by, value, (frame[column] == value).to_numpy())
            for value in sorted(frame[column].unique())
        ]
    selections += [
        ("class", names[y], (frame["label"] == y).to_numpy())
        for y in (1, 0)
        if (frame["label"] == y).any()
    ]
    rows = []
    for by, value, chosen in selections:
        patients = frame["patient"].to_numpy()[chosen]
        rows.append({
            "by": by, "value": value, "images": int(chosen.sum()),
            "patients": int(len(np.unique(patients))),
            **{
                name: metrics.mean_with_interval(measures[name][chosen], patients, n_boot=n_boot,
                                         seed=seed)
                for name in MEASURES
            },
        })  # fmt: skip
    return rows


VERDICT_RULE = (
    "on all annotated images: 'attention on the lungs' if the mean share of positive "
    "attribution inside the lungs exceeds the lungs' share of the image with the 95% interval "
    "of the excess above 0; 'outside the lungs' if the interval lies below 0; 'no clear "
    "preference' if it covers 0"
)


def verdict(overall: dict | None) -> str:
    if overall is None or overall["excess"]["ci95"] is None:
        return "not computed"
    low, high = overall["excess"]["ci95"]
    if low > 0:
        return "attention on the lungs"
    if high < 0:
        return "outside the lungs"
    return "no clear preference"


def lung_statistics(
    frame: pd.DataFrame,
    maps: dict[str, tuple[np.ndarray, np.ndarray]],
    lungs: dict[str, np.ndarray],
    *,
    labels: dict,
    n_boot: int,
    seed: int,
) -> dict:
    """The lungs JSON of one run. `frame`: the mapped images in the maps' order (id, split,
    source, label, patient, outcome); `maps`: per method (maps [N, H, W], peaks [N, 2]);
    `lungs`: image id -> lung mask. Only the images with a lung region are measured."""
    chosen = frame["id"].isin(lungs).to_numpy()
    annotated = frame[chosen].reset_index(drop=True)
    result: dict = {
        "images": int(chosen.sum()),
        "patients": int(annotated["patient"].nunique()),
        "mapped": len(frame),
        "rule": VERDICT_RULE,
        "measures": {
            "share": "share of the map's positive attribution inside the lungs",
            "area": "the lungs' share of the image: what a flat map puts inside them",
            "excess": "share - area",
            "hit": "pointing game: the map's peak lies inside the lungs (1) or not (0)",
            "hit_excess": "hit - area: the pointing game against a random point",
        },
        "methods": {},
        "per_image": [],
    }
    if not len(annotated):
        for method in maps:
            result["methods"][method] = {"groups": [], "verdict": "not computed"}
        return result
    side = next(iter(maps.values()))[0].shape[1]
    masks = np.stack([fit_mask(lungs[i], side) for i in annotated["id"]])
    columns = ["id", "split", "source", "patient", "label", "outcome"]
    per_image = annotated[columns].to_dict("records")
    for method, (found, peaks) in maps.items():
        measures = lung_measures(found[chosen], peaks[chosen], masks)
        groups = group_summaries(annotated, measures, labels=labels, n_boot=n_boot, seed=seed)
        overall = next((g for g in groups if g["by"] == "all annotated images"), None)
        result["methods"][method] = {"groups": groups, "verdict": verdict(overall)}
        for k, row in enumerate(per_image):
            row[method] = {
                name: None if not np.isfinite(measures[name][k]) else float(measures[name][k])
                for name in ("share", "area", "hit")
            }
    result["per_image"] = [{**row, "label": int(row["label"])} for row in per_image]
    return result
