"""Statistics of attribution maps (cxr.attribution): how much of each map's positive mass lies
in the central region (what the border probe blanks), in the border strip and in the top
corners where side markers sit, against the share of area an uninformative map puts there;
the pointing game against planted ground truth; per-group means with patient-bootstrap
intervals; and the verdict line. Plain numpy on arrays, no TensorFlow. Also which images are
mapped: every test image, and a bounded, fixed sample of each external source."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from cxr import metrics
from cxr.audit import border_mask
from cxr.errors import ConfigError
from cxr.io import atomic_open, finite_or_none

REGIONS = ("central", "border", "top_left", "top_right")
OUTCOMES = ("TP", "FN", "FP", "TN", "external TP", "external FN", "external FP", "external TN")
METHODS = ("gradcam", "occlusion")


def region_masks(size: int, border_fraction: float, corner_fraction: float) -> dict:
    """Boolean [size, size] masks: `central` is exactly what the border probe blanks,
    `border` its complement (the strip the probe keeps), `top_left` / `top_right` the corner
    boxes (`corner_fraction` of each side), which lie inside the strip."""
    if corner_fraction > border_fraction:
        raise ConfigError(
            f"saliency.corner_fraction {corner_fraction} is larger than audit.border_fraction "
            f"{border_fraction}: the corner boxes must lie in the border strip"
        )
    border = border_mask(size, size, border_fraction)
    side = max(1, round(size * corner_fraction))
    top_left = np.zeros((size, size), bool)
    top_left[:side, :side] = True
    top_right = np.zeros((size, size), bool)
    top_right[:side, size - side :] = True
    return {"central": ~border, "border": border, "top_left": top_left, "top_right": top_right}


def area_shares(masks: dict) -> dict:
    """The share of each region in an uninformative (flat) map: its share of the area."""
    return {name: float(mask.mean()) for name, mask in masks.items()}


def mass_shares(maps: np.ndarray, masks: dict) -> dict:
    """Per map [N, H, W], the share of its positive mass in each region; NaN for a map with no
    positive mass (nothing pointed anywhere)."""
    positive = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None)
    total = positive.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1.0)
    return {
        name: np.where(total > 0, (positive * mask).sum(axis=(1, 2)) / safe, np.nan)
        for name, mask in masks.items()
    }


def peak_regions(peaks: np.ndarray, masks: dict) -> list[str | None]:
    """The region that holds each peak ((x, y) in [0, 1]): a corner box if in one, else
    central or border; None for a map without a peak."""
    size = next(iter(masks.values())).shape[0]
    out: list[str | None] = []
    for x, y in np.asarray(peaks, dtype=float):
        if np.isnan(x):
            out.append(None)
            continue
        row, col = min(int(y * size), size - 1), min(int(x * size), size - 1)
        corner = [n for n in ("top_left", "top_right") if masks[n][row, col]]
        out.append(corner[0] if corner else "central" if masks["central"][row, col] else "border")
    return out


def outcomes(predictions: pd.DataFrame, threshold: float) -> list[str]:
    """TP, FN, FP, TN on the test split; the same prefixed 'external' on external sources (of
    healthy images, and of disease images such as a later snapshot's)."""
    called = predictions["probability"].to_numpy() >= threshold
    label = predictions["label"].to_numpy() == 1
    test = predictions["split"].to_numpy() == "test"
    out = []
    for is_test, y, p in zip(test, label, called, strict=True):
        kind = ("TP" if p else "FN") if y else ("FP" if p else "TN")
        out.append(kind if is_test else f"external {kind}")
    return out


# --------------------------------------------------------------------------- selection


def sample_key(seed: int, image_id: str) -> str:
    """The sampling order of an image: the SHA-256 (hex) of "<seed>:<image id>". Depends on the
    id alone, not on row order or library versions; an image added to a source leaves the
    others' order as it was."""
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def select_images(
    predictions: pd.DataFrame, per_source: int | None, seed: int, always=()
) -> pd.DataFrame:
    """The rows whose images are mapped, in the predictions' order: every test image, and of
    each external source at most `per_source` images per class (label), those with the
    smallest sample_key (ties by id), and every image whose id is in `always` (those with a
    lung region in the annotations); None keeps every image. The same images for every
    architecture and run: `seed` is the workflow's, not a run's."""
    frame = predictions.reset_index(drop=True)
    keep = np.ones(len(frame), bool)
    if per_source is not None:
        if per_source < 0:
            raise ConfigError(f"saliency.external_per_source is {per_source}; use 0 or more")
        external = frame[frame["split"] == "external"]
        keys = [sample_key(seed, i) for i in external["id"]]
        ordered = external.assign(_key=keys).sort_values(["_key", "id"])
        rank = ordered.groupby(["source", "label"], sort=False).cumcount()
        keep[rank.index.to_numpy()] = (rank < per_source).to_numpy()
        keep |= frame["id"].isin(set(always)).to_numpy()
    return frame[keep].reset_index(drop=True)


def selection(
    predictions: pd.DataFrame,
    mapped: pd.DataFrame,
    *,
    per_source: int | None,
    seed: int,
    labels: dict,
    always=(),
) -> dict:
    """For the statistics JSON: the rule that chose the `mapped` rows among `predictions`
    (select_images, with `always`), and per split, source and class the images, those mapped
    and those left out."""
    names = {1: labels["positive"], 0: labels["negative"]}
    chosen = set(mapped["id"])
    groups = []
    for split in ("test", "external"):
        part = predictions[predictions["split"] == split]
        for (source, label), rows in part.groupby(["source", "label"], sort=True):
            n, k = len(rows), int(rows["id"].isin(chosen).sum())
            groups.append({
                "split": split, "source": source, "label": names[int(label)],
                "images": n, "mapped": k, "left_out": n - k,
            })  # fmt: skip
    if per_source is None:
        rule = "every test and external image (saliency.external_per_source: null)"
    else:
        rule = (
            f"every test image; of each external source, at most {per_source} images per "
            f"class: those with the smallest SHA-256 of '{seed}:<image id>' "
            f"(saliency.external_per_source: {per_source}; seed: {seed})"
        )
        external = predictions[predictions["split"] == "external"]
        if external["id"].isin(set(always)).any():
            # Said only where it applies, so that data without annotations keep their text.
            rule += "; and every external image with a lung region in the annotations"
    total = sum(g["images"] for g in groups)
    done = sum(g["mapped"] for g in groups)
    return {
        "rule": rule,
        "external_per_source": per_source,
        "seed": seed,
        "images": total,
        "mapped": done,
        "left_out": total - done,
        "groups": groups,
    }


# --------------------------------------------------------------------------- ground truth


def ground_truth_boxes(truth: pd.DataFrame, images: pd.DataFrame, root: str | Path) -> dict:
    """{image id: {kind: [[x0, y0, x1, y1], ...]}} of the synthetic generator's table, matched
    to the curated images by their path under the generator's `root`."""
    key = truth["source_dir"] + "/" + truth["file"]
    boxes: dict = {}
    by_path = {
        Path(path).relative_to(root).as_posix(): image_id
        for image_id, path in zip(images["id"], images["path"], strict=True)
        if Path(path).is_relative_to(root)
    }
    for name, kind, *box in zip(key, truth["kind"], truth["x0"], truth["y0"], truth["x1"],
                                truth["y1"], strict=True):  # fmt: skip
        if name in by_path:
            boxes.setdefault(by_path[name], {}).setdefault(kind, []).append([float(v) for v in box])
    return boxes


def inside_any(point, boxes: list) -> bool:
    x, y = point
    return any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes)


def covered_area(boxes: list, size: int = 256) -> float:
    """Share of the image that the union of `boxes` covers: the chance that a uniformly random
    point falls inside one (the pointing game's baseline), on a size x size grid."""
    centres = (np.arange(size) + 0.5) / size
    xx, yy = np.meshgrid(centres, centres)
    hit = np.zeros((size, size), bool)
    for x0, y0, x1, y1 in boxes:
        hit |= (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    return float(hit.mean())


def pointing_game(peaks: np.ndarray, boxes: list[list]) -> dict:
    """How often the peak falls inside a planted box (images with at least one box), with a
    Wilson interval, against the mean share of area the boxes cover (a random point's rate)."""
    pairs = [(p, b) for p, b in zip(peaks, boxes, strict=True) if b]
    with_peak = [(p, b) for p, b in pairs if not np.isnan(p[0])]
    hits = sum(inside_any(p, b) for p, b in with_peak)
    result = metrics.proportion(hits, len(pairs))
    result["without_peak"] = len(pairs) - len(with_peak)
    result["random_point_rate"] = (
        float(np.mean([covered_area(b) for _, b in pairs])) if pairs else None
    )
    return result


# --------------------------------------------------------------------------- summaries


def group_summaries(
    frame: pd.DataFrame, shares: dict, *, labels: dict, n_boot: int, seed: int
) -> list[dict]:
    """Per group (all test images; each class, source and outcome), each region's mean mass
    share with its interval. `frame` has split, label, source, patient and outcome per image."""
    names = {1: labels["positive"], 0: labels["negative"]}
    test = frame["split"].to_numpy() == "test"
    selections = [("all test images", "", test)]
    selections += [("class", names[y], test & (frame["label"].to_numpy() == y)) for y in (1, 0)]
    selections += [
        ("source", source, (frame["source"] == source).to_numpy())
        for source in sorted(frame["source"].unique())
    ]
    selections += [("outcome", kind, (frame["outcome"] == kind).to_numpy()) for kind in OUTCOMES]
    rows = []
    for by, value, chosen in selections:
        if not chosen.any():
            continue
        patients = frame["patient"].to_numpy()[chosen]
        rows.append({
            "by": by, "value": value, "images": int(chosen.sum()),
            "patients": int(len(np.unique(patients))),
            "shares": {
                region: metrics.mean_with_interval(
                    shares[region][chosen], patients, n_boot=n_boot, seed=seed
                )
                for region in REGIONS
            },
        })  # fmt: skip
    return rows


def outside_verdict(group: dict, area: dict) -> dict:
    """'attention outside the lungs', in the audit's style, from the border strip's share
    (corner boxes included) over a group of images."""
    share = group["shares"]["border"]
    expected = area["border"]
    rule = (
        f"flag if the mean share of attribution in the border strip and corners is above its "
        f"share of the area ({expected:.0%}) with the 95% interval's lower bound above it too; "
        "warn if only the mean is above; else pass"
    )
    if share["mean"] is None:
        return {"verdict": "not computed", "rule": rule}
    if share["mean"] > expected and share["ci95"] and share["ci95"][0] > expected:
        level = "flag"
    elif share["mean"] > expected:
        level = "warn"
    else:
        level = "pass"
    return {"verdict": level, "rule": rule}


# --------------------------------------------------------------------------- arrays


def write_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed .npz (np.load reads it) whose bytes depend on the arrays only: np.savez
    stamps each member with the time of writing."""
    with (
        atomic_open(path, "wb") as handle,
        zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive,
    ):
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def statistics(
    predictions: pd.DataFrame,
    maps: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    threshold: float,
    border_fraction: float,
    corner_fraction: float,
    boxes: dict,
    labels: dict,
    n_boot: int,
    seed: int,
) -> dict:
    """The statistics JSON of one run: per method (maps [N, H, W] and peaks [N, 2] in the
    order of `predictions`), the group summaries, the verdict and the pointing game (on the
    TP images with a planted opacity; None without ground truth), and per image its shares,
    peak and planted boxes."""
    side = next(iter(maps.values()))[0].shape[1]
    masks = region_masks(side, border_fraction, corner_fraction)
    area = area_shares(masks)
    frame = predictions.reset_index(drop=True).copy()
    frame["outcome"] = outcomes(frame, threshold)
    ids = frame["id"].tolist()
    tp = (frame["outcome"] == "TP").to_numpy()
    summary, per_image = {}, [{} for _ in ids]
    for method, (found, peaks) in maps.items():
        shares = mass_shares(found, masks)
        regions = peak_regions(peaks, masks)
        groups = group_summaries(frame, shares, labels=labels, n_boot=n_boot, seed=seed)
        overall = next((g for g in groups if g["by"] == "all test images"), None)
        summary[method] = {
            "groups": groups,
            "verdict": outside_verdict(overall, area) if overall else None,
            "pointing_game": pointing_game(
                peaks[tp], [boxes.get(i, {}).get("opacity", []) for i in np.asarray(ids)[tp]]
            )
            if boxes
            else None,
        }
        for k in range(len(ids)):
            per_image[k][method] = {
                "shares": {r: finite_or_none(shares[r][k]) for r in REGIONS},
                "peak": [finite_or_none(v) for v in peaks[k]],
                "peak_region": regions[k],
            }
    return {
        "threshold": threshold,
        "explains": "the predicted class (disease where P(disease) >= threshold, else healthy)",
        "image_side": side,
        "regions": {
            "border_fraction": border_fraction,
            "corner_fraction": corner_fraction,
            "area_share": area,
        },
        "ground_truth": "synthetic generator's table" if boxes else None,
        "summary": summary,
        "images": [
            {
                "id": row["id"],
                "split": row["split"],
                "source": row["source"],
                "patient": row["patient"],
                "label": int(row["label"]),
                "probability": float(row["probability"]),
                "outcome": row["outcome"],
                "truth": boxes.get(row["id"], {}),
                **per_image[k],
            }
            for k, row in enumerate(frame.to_dict("records"))
        ],  # fmt: skip
    }
