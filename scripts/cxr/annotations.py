"""Expert annotations of the COVID-19 collection (ieee8023/covid-chestxray-dataset) as a step of
curation: lung boxes (COCO JSON), lungVAE lung masks (PNG) and severity scores (CSV), matched to
the curated images by file name. Each image's lung region is mapped onto the square the shards
resize it to. Every entry of every file is either used or logged with a reason (per file,
used + logged = total): a mask file is an entry of its folder, so one that cannot be read is
logged like any other; a file that cannot be read as a whole (the COCO JSON, the severity CSV)
raises DataError.

The validation is written by hand, not with a JSON schema or a CSV schema library: those stop
at the first error (or report errors apart from the entries), while curation must log every bad
entry under a name a user can find (`images[3]`, `annotations[7] (id 8)`, `line 9`), use the
rest, and count both."""

from __future__ import annotations

import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from cxr.errors import ConfigError, DataError
from cxr.images import ImageRejected, decode_image
from cxr.io import write_csv, write_json
from cxr.saliency import write_arrays
from cxr.shards import resize_square

log = logging.getLogger(__name__)

BOXES_FILE = "annotations/imageannotation_ai_lung_bounding_boxes.json"
MASKS_DIR = "annotations/lungVAE-masks"
SEVERITY_FILE = "annotations/covid-severity-scores.csv"
SEVERITY_RANGES = {"geographic_mean": (0.0, 8.0), "opacity_mean": (0.0, 6.0)}
TABLE_COLUMNS = [
    "id",
    "source",
    "patient",
    "file_name",
    "region",
    "boxes",
    "lung_area",
    "geographic_mean",
    "opacity_mean",
]
EXCLUSION_COLUMNS = ["file", "entry", "file_name", "reason"]

MASK_SUFFIX = "_mask.png"
# lungVAE writes PNG; no other format is opened, whatever the file's name.
MASK_FORMATS = ("PNG",)
LUNG_CATEGORIES = ("Right Lung", "Left Lung")
SEVERITY_NAME = "filename"
# Mask pixels at least this are lung, at the original size and after resizing to the square
# (a mask of only 0 and 1 aside: mask_lungs).
MASK_THRESHOLD = 128


@dataclass(frozen=True)
class Annotations:
    """The annotations matched to the curated images.

    table: TABLE_COLUMNS, one row per curated image (of the applies_to sources) with a lung
    region or severity scores, in the images' row order. masks: image id -> bool [size, size],
    its lung region in the shards' square. exclusions: EXCLUSION_COLUMNS, every annotation
    entry not used, with its reason ("class: detail"). summary: JSON-able counts."""

    table: pd.DataFrame
    masks: dict[str, np.ndarray]
    exclusions: pd.DataFrame
    summary: dict


@dataclass(frozen=True)
class _Image:
    """A curated image that annotations can match: its id and the facts matching needs."""

    id: str
    source: str
    patient: str
    name: str  # basename of `file`
    width: int
    height: int


@dataclass
class _Part:
    """What one annotation file gave: usable values per image id, its logged entries, counts."""

    found: dict[str, Any] = field(default_factory=dict)
    logged: list[dict] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def reason_class(reason: str) -> str:
    """The short, stable class of an exclusion's reason: 'malformed: bbox missing' gives
    'malformed'. The summary counts these; the detail after ': ' is for the reader."""
    return reason.split(": ", 1)[0]


def image_file_name(file: str) -> str:
    """The name an annotation gives an image: the basename of its curated `file`."""
    return PurePosixPath(file).name


def box_to_square(bbox, width: float, height: float, size: int) -> np.ndarray:
    """Bool [size, size]: the square pixels a box [x, y, w, h] (pixels of a width x height
    image) covers once the image is resized to size x size ignoring aspect, as the shards do:
    column c is in when its centre (c + 0.5) * width / size lies in [x, x + w]; rows likewise."""
    x, y, w, h = (float(v) for v in bbox)
    centres = np.arange(size) + 0.5
    columns = centres * width / size
    rows = centres * height / size
    in_columns = (columns >= x) & (columns <= x + w)
    in_rows = (rows >= y) & (rows <= y + h)
    return in_rows[:, None] & in_columns[None, :]


def mask_lungs(pixels: np.ndarray) -> np.ndarray:
    """Bool: the lung pixels of an 8-bit mask. A mask of only 0 and 1 (a binary mask stored as
    is) is lung where 1; any other, lung where >= MASK_THRESHOLD (lungVAE's 0 and 255), so an
    all-zero mask has none."""
    pixels = np.asarray(pixels)
    if pixels.size and pixels.max() == 1:
        return pixels == 1
    return pixels >= MASK_THRESHOLD


def mask_to_square(mask: np.ndarray, size: int) -> np.ndarray:
    """Bool [size, size]: a mask (bool, or 8-bit 0/255) resized as the shards resize its image
    (cxr.shards.resize_square: PIL BILINEAR, aspect ignored), then >= 128, so a square pixel is
    lung when at least half of what it interpolates from is."""
    mask = np.asarray(mask)
    pixels = mask.astype(np.uint8) * 255 if mask.dtype == bool else mask.astype(np.uint8)
    return resize_square(np.ascontiguousarray(pixels), size) >= MASK_THRESHOLD


def lung_region_square(
    mask: np.ndarray | None, boxes: list[np.ndarray]
) -> tuple[str, np.ndarray | None]:
    """An image's lung region in the square: its usable mask where it has one, else the union of
    its usable boxes; ("", None) with neither. Returns (kind, region)."""
    if mask is not None:
        return "mask", mask
    if boxes:
        return "boxes", np.logical_or.reduce(boxes)
    return "", None


def read_annotations(
    root: str | Path, images: pd.DataFrame, applies_to: list[str], size: int, *, max_pixels: int
) -> Annotations:
    """Match the annotation files under `root` (the collection's root) to the curated `images`
    of the `applies_to` sources; each region is mapped to the size x size square. `max_pixels`
    (curation.max_pixels) bounds a mask's declared size, as it bounds an image's."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(
            f"annotations.root {str(root)!r} does not exist or is not a folder; set "
            "annotations.root in config.yaml to the collection's root (the folder holding "
            "annotations/)"
        )
    if not (root / "annotations").is_dir():
        raise ConfigError(
            f"annotations.root {str(root)!r} has no annotations/ folder; set annotations.root "
            "to a snapshot of the collection that ships its annotations (April 2020 on)"
        )
    curated = _curated(images, applies_to)
    by_name: dict[str, list[_Image]] = {}
    by_stem: dict[str, list[_Image]] = {}
    for image in curated:
        by_name.setdefault(image.name, []).append(image)
        by_stem.setdefault(PurePosixPath(image.name).stem, []).append(image)

    boxes_path, masks_path, severity_path = (
        root / BOXES_FILE,
        root / MASKS_DIR,
        root / SEVERITY_FILE,
    )
    present = {
        "boxes": boxes_path.is_file(),
        "masks": masks_path.is_dir(),
        "severity": severity_path.is_file(),
    }
    boxes = _read_boxes(boxes_path, by_name, size) if present["boxes"] else _absent_boxes()
    masks = _read_masks(masks_path, by_stem, size, max_pixels) if present["masks"] else _absent()
    severity = _read_severity(severity_path, by_name) if present["severity"] else _absent()

    table_rows, squares = [], {}
    for image in curated:
        kind, region = lung_region_square(masks.found.get(image.id), boxes.found.get(image.id, []))
        scores = severity.found.get(image.id)
        if region is None and scores is None:
            continue
        if region is not None:
            squares[image.id] = region
        geographic, opacity = scores if scores is not None else (math.nan, math.nan)
        table_rows.append(
            {
                "id": image.id,
                "source": image.source,
                "patient": image.patient,
                "file_name": image.name,
                "region": kind,
                "boxes": len(boxes.found.get(image.id, [])),
                "lung_area": float(region.mean()) if region is not None else math.nan,
                "geographic_mean": geographic,
                "opacity_mean": opacity,
            }
        )
    table = _table(table_rows)
    exclusions = _exclusions(boxes.logged + masks.logged + severity.logged)

    files = {
        "boxes": {"path": BOXES_FILE, "present": present["boxes"], **boxes.counts},
        "masks": {"path": MASKS_DIR, "present": present["masks"], **masks.counts["entries"]},
        "severity": {
            "path": SEVERITY_FILE,
            "present": present["severity"],
            **severity.counts["entries"],
        },
    }
    _check_accounting(files, exclusions)
    per_source = {source: _source_counts(source, curated, table) for source in applies_to}
    summary = _summary(
        configured=True,
        note="",
        root=str(root),
        applies_to=list(applies_to),
        size=size,
        files=files,
        per_source=per_source,
        exclusions=exclusions,
    )
    log.info(
        "annotations of %s: %d image(s) with a lung region (%d by mask), %d with severity "
        "scores; %d annotation entries logged",
        ", ".join(applies_to),
        len(squares),
        int((table["region"] == "mask").sum()),
        int(table["geographic_mean"].notna().sum()),
        len(exclusions),
    )
    return Annotations(table=table, masks=squares, exclusions=exclusions, summary=summary)


def empty_annotations(reason: str, size: int = 0) -> Annotations:
    """Annotations of a dataset that has none: empty frames with their columns and a summary
    with the configured run's keys, zero counts and `reason` as its note."""
    files = {
        "boxes": {"path": BOXES_FILE, "present": False, **_absent_boxes().counts},
        "masks": {"path": MASKS_DIR, "present": False, **_counts(0, 0)},
        "severity": {"path": SEVERITY_FILE, "present": False, **_counts(0, 0)},
    }
    exclusions = _exclusions([])
    summary = _summary(
        configured=False,
        note=reason,
        root=None,
        applies_to=[],
        size=size,
        files=files,
        per_source={},
        exclusions=exclusions,
    )
    return Annotations(table=_table([]), masks={}, exclusions=exclusions, summary=summary)


def write_annotations(
    annotations: Annotations,
    *,
    table_path: str | Path,
    masks_path: str | Path,
    exclusions_path: str | Path,
    summary_path: str | Path,
) -> None:
    """Write the table and exclusions (CSV), the masks (.npz of `ids` [N] and bool `masks`
    [N, size, size], in the table's order) and the summary (JSON); same content, same bytes."""
    ids = list(annotations.masks)
    size = annotations.summary["size"]
    stack = (
        np.stack([annotations.masks[i] for i in ids]).astype(bool)
        if ids
        else np.zeros((0, size, size), dtype=bool)
    )
    write_csv(table_path, annotations.table)
    write_arrays(masks_path, {"ids": np.array(ids, dtype=str), "masks": stack})
    write_csv(exclusions_path, annotations.exclusions)
    write_json(summary_path, annotations.summary)


# --- the curated images -------------------------------------------------------------------------


def _curated(images: pd.DataFrame, applies_to: list[str]) -> list[_Image]:
    """The curated images of the applies_to sources, in the table's row order."""
    rows = images[images["source"].isin(list(applies_to))]
    return [
        _Image(
            id=str(row["id"]),
            source=str(row["source"]),
            patient=str(row["patient"]),
            name=image_file_name(str(row["file"])),
            width=int(row["width"]),
            height=int(row["height"]),
        )
        for row in rows.to_dict("records")
    ]


def _fitting(matches: list[_Image], width: float, height: float) -> list[_Image]:
    return [m for m in matches if m.width == width and m.height == height]


def _sizes(matches: list[_Image]) -> str:
    return ", ".join(f"{m.id} is {m.width}x{m.height}" for m in matches)


def _warn_partly_used(entry: str, file: str, used: list[_Image], matches: list[_Image]) -> None:
    """An entry used for some of the images it names (two snapshots) but not all is used, so it
    is not in the exclusion log; the images it skipped are told here."""
    skipped = [m for m in matches if m not in used]
    if skipped:
        log.warning(
            "%s %s: used for %s but not for %s (size differs: %s)",
            file,
            entry,
            ", ".join(m.id for m in used),
            ", ".join(m.id for m in skipped),
            _sizes(skipped),
        )


# --- boxes (COCO JSON) ------------------------------------------------------------------------


def _read_boxes(path: Path, by_name: dict[str, list[_Image]], size: int) -> _Part:
    """Each curated image's usable boxes as squares, and the logged images[] and
    annotations[] entries."""
    data = _load_json(path)
    lungs = _lung_categories(path, data["categories"])
    entries, annotations = data["images"], data["annotations"]
    image_reasons, image_uses = _image_entries(entries, by_name)
    part = _Part()
    for i in sorted(image_reasons):
        part.logged.append(
            _logged(BOXES_FILE, f"images[{i}]", _name_of(entries[i]), image_reasons[i])
        )

    by_id: dict[Any, list[int]] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and _is_id(entry.get("id")):
            by_id.setdefault(entry["id"], []).append(i)
    used_annotations = 0
    for j, annotation in enumerate(annotations):
        entry_name = f"annotations[{j}]"
        if isinstance(annotation, dict) and _is_id(annotation.get("id")):
            entry_name += f" (id {annotation['id']})"
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        i = by_id[image_id][0] if _is_id(image_id) and image_id in by_id else None
        file_name = _name_of(entries[i]) if i is not None else ""
        reason = _annotation_problem(annotation, i, lungs, entries, image_reasons, size)
        if reason:
            part.logged.append(_logged(BOXES_FILE, entry_name, file_name, reason))
            continue
        entry = entries[i]
        square = box_to_square(annotation["bbox"], entry["width"], entry["height"], size)
        for image in image_uses[i]:
            part.found.setdefault(image.id, []).append(square)
        used_annotations += 1
    part.counts = {
        "images": _counts(len(entries), len(image_reasons)),
        "annotations": _counts(len(annotations), len(annotations) - used_annotations),
    }
    return part


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "replace it with the collection's file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc}); replace it with the collection's file"
        ) from exc
    missing = [
        key
        for key in ("images", "annotations", "categories")
        if not isinstance(data, dict) or not isinstance(data.get(key), list)
    ]
    if missing:
        raise DataError(
            f"{path}: not a COCO file: no {', '.join(missing)} list(s) at the top level; "
            "replace it with the collection's file"
        )
    return data


def _lung_categories(path: Path, categories: list) -> dict[Any, str]:
    """Category id -> name of the lung categories, looked up by name in the file."""
    wanted = {name.casefold(): name for name in LUNG_CATEGORIES}
    lungs = {
        c["id"]: wanted[c["name"].strip().casefold()]
        for c in categories
        if isinstance(c, dict)
        and _is_id(c.get("id"))
        and isinstance(c.get("name"), str)
        and c["name"].strip().casefold() in wanted
    }
    lacking = [name for name in LUNG_CATEGORIES if name not in lungs.values()]
    if lacking:
        found = [c.get("name") for c in categories if isinstance(c, dict)]
        raise DataError(
            f"{path}: categories lack {', '.join(map(repr, lacking))} (found {found}); "
            "the boxes file must name its categories 'Right Lung' and 'Left Lung'"
        )
    return lungs


def _image_entries(
    entries: list, by_name: dict[str, list[_Image]]
) -> tuple[dict[int, str], dict[int, list[_Image]]]:
    """Each images[] entry's reason to be logged, or the curated images it is used for."""
    reasons: dict[int, str] = {}
    for i, entry in enumerate(entries):
        problem = _image_entry_problem(entry)
        if problem:
            reasons[i] = f"malformed: {problem}"
    ids: dict[Any, list[int]] = {}
    names: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and _is_id(entry.get("id")):
            ids.setdefault(entry["id"], []).append(i)
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str):
            names.setdefault(entry["file_name"], []).append(i)
    uses: dict[int, list[_Image]] = {}
    for i, entry in enumerate(entries):
        if i in reasons:
            continue
        name, width, height = entry["file_name"], entry["width"], entry["height"]
        same_id = [f"images[{k}]" for k in ids[entry["id"]] if k != i]
        twins = [f"images[{k}]" for k in names[name] if k != i]
        matches = by_name.get(name, [])
        fits = _fitting(matches, width, height)
        if same_id:
            reasons[i] = f"malformed: id {entry['id']} also in {', '.join(same_id)}"
        elif twins:
            reasons[i] = f"named twice: {name!r} also in {', '.join(twins)}; neither is used"
        elif not matches:
            reasons[i] = f"no curated image: no curated image's file is named {name!r}"
        elif not fits:
            reasons[i] = (
                f"size mismatch: images[] entry is {width:g}x{height:g}, curated image "
                f"{_sizes(matches)}; its boxes would be placed wrongly"
            )
        else:
            uses[i] = fits
            _warn_partly_used(f"images[{i}]", BOXES_FILE, fits, matches)
    return reasons, uses


def _image_entry_problem(entry) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    problems = []
    if not _is_id(entry.get("id")):
        problems.append("id missing")
    if not isinstance(entry.get("file_name"), str) or not entry["file_name"]:
        problems.append("file_name missing")
    for key in ("width", "height"):
        if key not in entry:
            problems.append(f"{key} missing")
        elif _number(entry[key]) is None:
            problems.append(f"{key} {entry[key]!r} is not a number")
        elif entry[key] <= 0:
            problems.append(f"{key} {entry[key]!r} is not positive")
    return "; ".join(problems)


def _annotation_problem(
    annotation,
    i: int | None,
    lungs: dict[Any, str],
    entries: list,
    image_reasons: dict[int, str],
    size: int,
) -> str:
    """The reason to log an annotations[] entry, or "" when its box is used."""
    if not isinstance(annotation, dict):
        return "malformed: not an object"
    problems = []
    if "image_id" not in annotation:
        problems.append("image_id missing")
    elif i is None:
        problems.append(f"image_id {annotation['image_id']!r} is not in images[]")
    category = annotation.get("category_id")
    if not _is_id(category) or category not in lungs:
        known = ", ".join(f"{name}: {cid}" for cid, name in lungs.items())
        problems.append(f"category_id {category!r} is not a lung category ({known})")
    bbox = annotation.get("bbox")
    problem = _bbox_problem(bbox)
    if problem:
        problems.append(problem)
    if problems:
        return "malformed: " + "; ".join(problems)
    if i in image_reasons:
        return (
            f"image entry not used: images[{i}] ({_name_of(entries[i])!r}) is logged "
            f"({image_reasons[i]})"
        )
    width, height = entries[i]["width"], entries[i]["height"]
    x, y, w, h = bbox
    if x < 0 or y < 0 or x + w > width or y + h > height:
        return f"box outside image: bbox {bbox} on a {width:g}x{height:g} image"
    if not box_to_square(bbox, width, height, size).any():
        return f"empty box: bbox {bbox} covers no pixel of the {size}x{size} square"
    return ""


def _bbox_problem(bbox) -> str:
    if bbox is None:
        return "bbox missing"
    if not isinstance(bbox, list) or len(bbox) != 4:
        return f"bbox {bbox!r} is not 4 values"
    if any(_number(v) is None for v in bbox):
        return f"bbox {bbox!r} has a non-numeric or non-finite value"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"bbox {bbox!r} has a width or height <= 0"
    return ""


def _name_of(entry) -> str:
    name = entry.get("file_name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else ""


def _is_id(value) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _number(value) -> float | None:
    """A finite JSON number (not a bool, not a string), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


# --- masks (PNG) ------------------------------------------------------------------------------


def _read_masks(
    folder: Path, by_stem: dict[str, list[_Image]], size: int, max_pixels: int
) -> _Part:
    """Each curated image's usable mask as a square, and the logged mask files: every entry of
    the folder (a file that cannot be read, a folder, a link) is one or the other."""
    part = _Part()
    paths = sorted(folder.iterdir(), key=lambda p: p.name)
    for path in paths:
        name = path.name
        reason, used = _mask_problem(path, by_stem, size, max_pixels)
        if reason:
            part.logged.append(_logged(MASKS_DIR, name, name, reason))
            continue
        square, images = used
        for image in images:
            part.found[image.id] = square
    part.counts = {"entries": _counts(len(paths), len(part.logged))}
    return part


def _mask_problem(
    path: Path, by_stem: dict[str, list[_Image]], size: int, max_pixels: int
) -> tuple[str, tuple[np.ndarray, list[_Image]] | None]:
    """(reason to log the mask file, None), or ("", (its square, the images it is used for))."""
    name = path.name
    if not name.endswith(MASK_SUFFIX):
        return f"not a mask name: {name!r} does not end in {MASK_SUFFIX!r}", None
    stem = name[: -len(MASK_SUFFIX)]
    matches = by_stem.get(stem, [])
    if not matches:
        return f"no curated image: no curated image's file is named {stem!r} + extension", None
    try:
        mode, pixels = _load_mask(path, max_pixels)
    except ImageRejected as exc:
        detail = exc.detail.replace(str(path), name)
        return f"{exc.reason}: {detail}; replace it with the collection's mask or remove it", None
    if pixels is None:
        return f"malformed: mode {mode}, not 8-bit grayscale", None
    if not pixels.any():
        return f"empty mask: no pixel >= {MASK_THRESHOLD}", None
    height, width = pixels.shape
    fits = _fitting(matches, width, height)
    if not fits:
        return f"size mismatch: mask is {width}x{height}, curated image {_sizes(matches)}", None
    square = mask_to_square(pixels, size)
    if not square.any():
        return f"empty mask: no lung pixel left at {size}x{size}", None
    _warn_partly_used(name, MASKS_DIR, fits, matches)
    return "", (square, fits)


def _load_mask(path: Path, max_pixels: int) -> tuple[str, np.ndarray | None]:
    """(mode, bool lung pixels: mask_lungs) of an 8-bit grayscale PNG; pixels None for another
    mode. Raises ImageRejected for a file that is no readable PNG (decode_image)."""
    with decode_image(path, formats=MASK_FORMATS, max_pixels=max_pixels) as image:
        if image.mode not in ("L", "1"):
            return image.mode, None
        return image.mode, mask_lungs(np.asarray(image.convert("L")))


# --- severity scores (CSV) --------------------------------------------------------------------


def _read_severity(path: Path, by_name: dict[str, list[_Image]]) -> _Part:
    """Each curated image's (geographic_mean, opacity_mean), and the logged rows."""
    rows = _load_severity(path)
    reasons: dict[int, str] = {}
    values: dict[int, tuple[float, float]] = {}
    for k, row in enumerate(rows):
        problem, scores = _severity_values(row)
        if problem:
            reasons[k] = f"malformed: {problem}"
        else:
            values[k] = scores
    named = Counter(row[SEVERITY_NAME] for row in rows if row[SEVERITY_NAME])
    part = _Part()
    for k, row in enumerate(rows):
        name = row[SEVERITY_NAME]
        if k not in reasons and named[name] > 1:
            lines = [f"line {r['line']}" for r in rows if r[SEVERITY_NAME] == name and r is not row]
            reasons[k] = f"named twice: {name!r} also on {', '.join(lines)}; neither is used"
        elif k not in reasons and not by_name.get(name):
            reasons[k] = f"no curated image: no curated image's file is named {name!r}"
        if k in reasons:
            part.logged.append(_logged(SEVERITY_FILE, f"line {row['line']}", name, reasons[k]))
            continue
        for image in by_name[name]:
            part.found[image.id] = values[k]
    part.counts = {"entries": _counts(len(rows), len(reasons))}
    return part


def _load_severity(path: Path) -> list[dict]:
    """The data rows as dicts of stripped text (the three columns, `extra` for values beyond
    the header's columns, `line` the line number in the file, counting the ## lines)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text ({exc}); replace it with the collection's file"
        ) from exc
    # The ## comment lines (and blank lines) are skipped here, not by pandas' `comment`, which
    # would also cut a value at a '#'; their line numbers are kept.
    kept = [
        (number, line.rstrip("\r"))
        for number, line in enumerate(text.split("\n"), start=1)
        if not line.startswith("##") and line.strip()
    ]
    expected = ",".join([SEVERITY_NAME, *SEVERITY_RANGES])
    if not kept:
        raise DataError(f"{path}: no header line after the ## comments; expected {expected!r}")
    # As many columns as the most commas on a line: rows with extra values read as rows
    # (logged), not as a parser error or, worse, as an index column.
    width = max(line.count(",") for _, line in kept) + 1
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(line for _, line in kept)),
            header=None,
            names=list(range(width)),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: not a CSV pandas can read ({exc})") from exc
    if len(frame) != len(kept):
        raise DataError(
            f"{path}: {len(kept)} lines gave {len(frame)} rows (a quoted value spans lines?); "
            "replace it with the collection's file"
        )
    cells = [[str(v).strip() for v in row] for row in frame.itertuples(index=False)]
    header = cells[0]
    while header and header[-1] == "":
        header.pop()
    named = Counter(header)
    if any(named[name] != 1 for name in expected.split(",")):
        raise DataError(
            f"{path}: header {kept[0][1]!r} on line {kept[0][0]} is not the expected "
            f"{expected!r}; replace it with the collection's file"
        )
    columns = {name: header.index(name) for name in expected.split(",")}
    rows = []
    for (number, _), row in zip(kept[1:], cells[1:], strict=True):
        record = {name: row[index] for name, index in columns.items()}
        extra = [v for v in row[len(header) :] if v]
        rows.append({**record, "extra": len(extra), "line": number})
    return rows


def _severity_values(row: dict) -> tuple[str, tuple[float, float] | None]:
    """(problems, None) or ("", (geographic_mean, opacity_mean)) of a severity row."""
    problems = []
    if not row[SEVERITY_NAME]:
        problems.append(f"{SEVERITY_NAME} missing")
    scores = []
    for column, (low, high) in SEVERITY_RANGES.items():
        text = row[column]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not text:
            problems.append(f"{column} missing")
        elif not math.isfinite(value):
            problems.append(f"{column} {text!r} is not a number")
        elif not low <= value <= high:
            problems.append(f"{column} {text} is outside {low:g}-{high:g}")
        scores.append(value)
    if row["extra"]:
        problems.append(f"{row['extra']} value(s) beyond the header's columns")
    if problems:
        return "; ".join(problems), None
    return "", (scores[0], scores[1])


# --- tables and counts ------------------------------------------------------------------------


def _absent() -> _Part:
    return _Part(counts={"entries": _counts(0, 0)})


def _absent_boxes() -> _Part:
    return _Part(counts={"images": _counts(0, 0), "annotations": _counts(0, 0)})


def _counts(total: int, logged: int) -> dict[str, int]:
    return {"total": total, "used": total - logged, "logged": logged}


def _logged(file: str, entry: str, file_name: str, reason: str) -> dict:
    return {"file": file, "entry": entry, "file_name": file_name, "reason": reason}


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.astype(
        {
            "id": str,
            "source": str,
            "patient": str,
            "file_name": str,
            "region": str,
            "boxes": "int64",
            "lung_area": float,
            "geographic_mean": float,
            "opacity_mean": float,
        }
    )


def _exclusions(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EXCLUSION_COLUMNS).astype(str)


def _source_counts(source: str, curated: list[_Image], table: pd.DataFrame) -> dict[str, int]:
    """A source's curated images and how many of them have a lung region (by mask, by boxes
    only) and severity scores."""
    rows = table[table["source"] == source]
    return {
        "images": sum(image.source == source for image in curated),
        "lung_region": int((rows["region"] != "").sum()),
        "mask": int((rows["region"] == "mask").sum()),
        "boxes_only": int((rows["region"] == "boxes").sum()),
        "severity": int(rows["geographic_mean"].notna().sum()),
    }


def _check_accounting(files: dict, exclusions: pd.DataFrame) -> None:
    """Every entry of every file is used or logged, and every logged entry is in the log: a
    failure is a bug and must never pass silently."""
    counts = [
        (BOXES_FILE, "images", files["boxes"]["images"]),
        (BOXES_FILE, "annotations", files["boxes"]["annotations"]),
        (MASKS_DIR, "files", files["masks"]),
        (SEVERITY_FILE, "rows", files["severity"]),
    ]
    for file, what, c in counts:
        if c["used"] + c["logged"] != c["total"] or c["used"] < 0:
            raise AssertionError(f"accounting of {file} {what}: {c}")
    logged = sum(c["logged"] for _, _, c in counts)
    if logged != len(exclusions):
        raise AssertionError(f"accounting: {logged} entries logged, {len(exclusions)} in the log")


def _summary(
    *,
    configured: bool,
    note: str,
    root: str | None,
    applies_to: list[str],
    size: int,
    files: dict,
    per_source: dict,
    exclusions: pd.DataFrame,
) -> dict:
    classes = Counter(reason_class(reason) for reason in exclusions["reason"])
    return {
        "configured": configured,
        "note": note,
        "root": root,
        "applies_to": applies_to,
        "size": size,
        "files": files,
        "per_source": per_source,
        "excluded": len(exclusions),
        "reasons": dict(sorted(classes.items())),
    }
