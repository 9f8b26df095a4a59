"""The collection's expert annotations, which its snapshots ship from April 2020 on, written as
its `annotations/` folder: lung boxes (COCO JSON), lung masks (lungVAE PNGs) and severity scores
(CSV) of the COVID-19 PA X-rays free of planted faults, derived from the lungs and opacities each
picture was drawn with (`cxr.synthetic.findings`). Each file covers its own share of the images
and carries one bad entry of each class a reader must catch. The folder goes under the later
snapshot's root, covering the first snapshot's files copied there too, or under the first
snapshot's root when there is no later one. A stream of its own: no other file changes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.errors import DataError
from cxr.io import atomic_open
from cxr.synthetic import streams
from cxr.synthetic.findings import lung_box, lung_mask, severity_scores
from cxr.synthetic.names import (
    ANNOTATIONS_DIR,
    BOXES_FILE,
    MASKS_DIR,
    SEVERITY_FILE,
    hex_name,
)

# The annotations/ folder of the collection's later snapshots: lung boxes (COCO), lung masks and
# severity scores. Each covers its own share of the COVID-19 PA X-rays, as in the real folder.
# Severity covers nearly every image (the real file about 90): the severity controls of the
# tests need as many scored images as the small test split has.
_BOXES_SHARE, _MASKS_SHARE, _SEVERITY_SHARE = 0.8, 0.7, 0.95
_BOXES_HEAD = {
    "info": {"description": "synthetic lung bounding boxes (seeded): the lung ellipses drawn",
             "url": "", "creator": "cxr.synthetic", "date_created": "04/02/2020"},
    "licenses": [{"url": "https://creativecommons.org/licenses/by/4.0/", "id": 1,
                  "name": "Attribution License"}],
    # Category 1 is the patient's right lung: on the image's left, as radiographs are shown.
    "categories": [{"supercategory": "Lungs", "id": 1, "name": "Right Lung"},
                   {"supercategory": "Lungs", "id": 2, "name": "Left Lung"}],
}  # fmt: skip
SEVERITY_COLUMNS = ["filename", "geographic_mean", "opacity_mean"]
# The real file's comment lines, padded with commas to the header's three fields (no comma
# inside: a reader that does not skip them sees three fields).
_SEVERITY_COMMENTS = [
    "## Synthetic severity scores (seeded): computed from the opacities drawn; not rated",
    "## License: CC BY 4.0",
    "## Citation: synthetic data of cxr.synthetic (severity_scores)",
    "## geographic_extent_mean: extent of lung involvement by the opacities; both lungs; 0 to 8.",
    "## opacity_mean: degree of opacity; both lungs; 0 to 6.",
]
_NOT_A_NUMBER = "3-4"  # a rater's range where a number belongs: the planted non-numeric value


def _annotatable(root: Path, entry: dict) -> bool:
    """A COVID-19 PA X-ray free of planted faults whose file is under `root`/images."""
    meta = entry["metadata"]
    return (
        (meta["finding"], meta["view"], meta["modality"]) == ("COVID-19", "PA", "X-ray")
        and not entry["fault"]
        and (root / "images" / entry["file_name"]).is_file()
    )


def write_annotations(root: Path, drawn: list[dict], *, seed: int) -> dict:
    """Write the collection's annotations/ folder under `root` for the COVID-19 PA X-rays of
    `drawn` (one entry per file under `root`/images, as `drawn_entry` makes them: file_name, width,
    height, metadata, fault, lungs, opacities) free of planted faults whose file exists: lung
    boxes for ~80% of them, lung masks for another ~70% (some have only one of the two), severity
    scores (`severity_scores`) for ~85%. Each file carries one bad entry of each class that a
    reader must catch. Returns, per file, its path under `root`, the images it covers and the bad
    entries planted. A stream of its own: no other file changes."""
    root = Path(root)
    images = sorted((d for d in drawn if _annotatable(root, d)), key=lambda d: d["file_name"])
    names = [d["file_name"] for d in images]
    if not images:
        raise DataError(f"{root / 'images'}: no COVID-19 PA X-ray drawn there to annotate")
    if len(set(names)) != len(names):
        raise AssertionError("an image drawn twice under one name")  # a bug here, not user data
    rng = streams.rng(seed, streams.ANNOTATIONS)
    n = len(images)
    order = rng.permutation(n)
    # Masks from the other end of one order than boxes: some images get only boxes, some only
    # masks, most both.
    boxed = sorted(order[: round(_BOXES_SHARE * n)])
    masked = sorted(order[n - round(_MASKS_SHARE * n) :])
    scored = sorted(rng.permutation(n)[: round(_SEVERITY_SHARE * n)])
    on_disk = {path.name for path in (root / "images").iterdir()}
    folder = root / ANNOTATIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "dir": root.name,
        "images": names,
        "boxes": _write_boxes(folder / BOXES_FILE, [images[i] for i in boxed], rng, on_disk),
        "masks": _write_masks(folder / MASKS_DIR, [images[i] for i in masked], rng, on_disk),
        "severity": _write_severity(
            folder / SEVERITY_FILE, [images[i] for i in scored], rng, on_disk
        ),
    }


def _unknown_name(rng: np.random.Generator, on_disk: set[str], suffix: str) -> str:
    """A GUID-like file name that no file under images/ has, stem included."""
    stems = {Path(name).stem for name in on_disk}
    while True:
        stem = hex_name(rng)
        if stem not in stems:
            return stem + suffix


def _coco_entry(entry: dict) -> tuple[dict, list[dict]]:
    """One images[] entry and its two lung boxes, ids to be numbered."""
    width, height, meta = entry["width"], entry["height"], entry["metadata"]
    image = {"license": 1, "file_name": entry["file_name"], "height": height, "width": width,
             "id": 0, "metadata": dict(meta)}  # fmt: skip
    attributes = {"Finding": [meta["finding"]], "View": [meta["view"]]}
    boxes = []
    for category, lung in enumerate(entry["lungs"], start=1):
        bbox = lung_box(lung, width, height)
        area = bbox[2] * bbox[3]
        boxes.append({"segmentation": [], "area": area, "image_id": 0, "bbox": bbox, "id": 0,
                      "category_id": category, "attributes": dict(attributes)})  # fmt: skip
    return image, boxes


def _write_boxes(
    path: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """The COCO file of lung boxes, with its bad entries: an unknown file, a file named twice, a
    non-numeric coordinate, an unknown category, a box past the image's edge, a wrong size."""
    entries = [_coco_entry(d) for d in images]
    n = len(entries)
    picks = rng.choice(n, 5, replace=n < 5)
    twice, non_numeric, unknown_category, outside, resized = (entries[i] for i in picks)
    copy = _coco_entry(images[picks[0]])  # as it was: before the changes below
    # With fewer than five images some share one, so each change takes a box of its own, and
    # the third box spans the first two before any of them changes.
    (x0, y0, w0, h0), (x1, y1, w1, h1) = (box["bbox"] for box in unknown_category[1][:2])
    left, top = min(x0, x1), min(y0, y1)
    right, bottom = max(x0 + w0, x1 + w1), max(y0 + h0, y1 + h1)
    unknown_category[1].append(
        dict(unknown_category[1][0], bbox=[left, top, right - left, bottom - top],
             area=(right - left) * (bottom - top), category_id=3)
    )  # fmt: skip
    non_numeric[1][0]["bbox"][int(rng.integers(4))] = "n/a"
    width = outside[0]["width"]
    x, y, w, h = outside[1][1]["bbox"]
    outside[1][1]["bbox"] = [width - w // 2, y, w, h]
    actual = [resized[0]["width"], resized[0]["height"]]
    resized[0]["width"], resized[0]["height"] = round(1.5 * actual[0]), round(1.5 * actual[1])
    entries.insert(int(rng.integers(picks[0] + 1, n + 1)), copy)
    stranger = _coco_entry(images[int(rng.integers(n))])
    stranger[0]["file_name"] = _unknown_name(rng, on_disk, ".jpg")
    entries.insert(int(rng.integers(len(entries) + 1)), stranger)
    annotations = []
    for image_id, (image, boxes) in enumerate(entries, start=1):
        image["id"] = image_id
        for box in boxes:
            box["image_id"], box["id"] = image_id, len(annotations) + 1
            annotations.append(box)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        # Laid out as the collection's file: one line per image and per box.
        handle.write("{\n")
        for key, value in _BOXES_HEAD.items():
            handle.write(f'  "{key}": {json.dumps(value)},\n')
        handle.write('  "images": [\n    ')
        handle.write(",\n    ".join(json.dumps(image) for image, _ in entries))
        handle.write('\n  ],\n  "annotations": [\n    ')
        handle.write(",\n    ".join(json.dumps(box) for box in annotations))
        handle.write("\n  ]\n}\n")

    def where(entry: tuple[dict, list[dict]], box: int | None = None) -> dict:
        found = {"file_name": entry[0]["file_name"], "image_id": entry[0]["id"]}
        return found if box is None else {**found, "annotation_id": entry[1][box]["id"]}

    return {
        "path": f"{ANNOTATIONS_DIR}/{BOXES_FILE}",
        "images": sorted(d["file_name"] for d in images),
        "bad": {
            "unknown_file": where(stranger),
            "duplicate_file_name": {
                "file_name": copy[0]["file_name"],
                "image_ids": [twice[0]["id"], copy[0]["id"]],
            },
            "non_numeric_bbox": {**where(non_numeric, 0), "bbox": non_numeric[1][0]["bbox"]},
            "unknown_category": {**where(unknown_category, 2), "category_id": 3},
            "box_outside_image": {
                **where(outside, 1),
                "bbox": outside[1][1]["bbox"],
                "width": width,
            },
            "wrong_image_size": {
                **where(resized),
                "listed": [resized[0]["width"], resized[0]["height"]],
                "actual": actual,
            },
        },
    }


def _write_masks(
    folder: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """One lung mask per image, with its bad entries: a mask at half its image's size, a mask of
    a file that is not in the collection."""
    folder.mkdir(parents=True, exist_ok=True)
    wrong = int(rng.integers(len(images)))
    written: dict[str, str] = {}
    for k, entry in enumerate(images):
        width, height = entry["width"], entry["height"]
        name = f"{Path(entry['file_name']).stem}_mask.png"
        if k == wrong:  # drawn on a downscaled copy of the image
            width, height = max(1, width // 2), max(1, height // 2)
            wrong_size = {"file_name": entry["file_name"], "mask": name, "size": [width, height],
                          "image_size": [entry["width"], entry["height"]]}  # fmt: skip
        if name in written:
            raise AssertionError(f"two images share the mask name {name}")  # a bug here
        _save_mask(folder / name, lung_mask(entry["lungs"], width, height))
        written[name] = entry["file_name"]
    model = images[int(rng.integers(len(images)))]
    stranger = _unknown_name(rng, on_disk, "_mask.png")
    _save_mask(folder / stranger, lung_mask(model["lungs"], model["width"], model["height"]))
    return {
        "path": f"{ANNOTATIONS_DIR}/{MASKS_DIR}",
        "images": sorted(written.values()),
        "bad": {"wrong_size": wrong_size, "unknown_file": {"mask": stranger}},
    }


def _save_mask(path: Path, mask: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def _write_severity(
    path: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """The severity scores, with their bad rows: a non-numeric value, a value out of range, a
    row given twice, a row of a file that is not in the collection."""
    scores = [
        [f"{value:.1f}" for value in severity_scores(entry["lungs"], entry["opacities"])]
        for entry in images
    ]
    rows = [[entry["file_name"], *values] for entry, values in zip(images, scores, strict=True)]
    n = len(rows)
    non_numeric, out_of_range, twice = (int(i) for i in rng.choice(n, 3, replace=n < 3))
    copy = list(rows[twice])
    rows[non_numeric][2] = _NOT_A_NUMBER
    rows[out_of_range][1] = "9.5"
    rows.insert(int(rng.integers(twice + 1, n + 1)), copy)
    stranger = [_unknown_name(rng, on_disk, ".png"), *scores[int(rng.integers(n))]]
    rows.insert(int(rng.integers(len(rows) + 1)), stranger)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        for comment in _SEVERITY_COMMENTS:
            handle.write(comment + "," * (len(SEVERITY_COLUMNS) - 1) + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SEVERITY_COLUMNS)
        writer.writerows(rows)
    return {
        "path": f"{ANNOTATIONS_DIR}/{SEVERITY_FILE}",
        "images": sorted(entry["file_name"] for entry in images),
        "bad": {
            "non_numeric": {"filename": images[non_numeric]["file_name"],
                            "column": "opacity_mean", "value": _NOT_A_NUMBER},
            "out_of_range": {"filename": images[out_of_range]["file_name"],
                             "column": "geographic_mean", "value": 9.5},
            "duplicate_row": {"filename": copy[0]},
            "unknown_file": {"filename": stranger[0]},
        },
    }  # fmt: skip
