"""Expert annotations of the COVID-19 collection: the shipped examples, each class of problem
logged with its reason (used + logged = total per file), whole-file errors, the mapping of boxes
and masks onto the shards' square, and the written outputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr.annotations import (
    BOXES_FILE,
    EXCLUSION_COLUMNS,
    MASKS_DIR,
    SEVERITY_FILE,
    TABLE_COLUMNS,
    box_to_square,
    empty_annotations,
    lung_region_square,
    mask_lungs,
    mask_to_square,
    read_annotations,
    reason_class,
    write_annotations,
)
from cxr.errors import ConfigError, DataError
from hostile_files import (
    ENDLESS_POSTSCRIPT,
    no_ghostscript,  # noqa: F401 (a fixture)
    png_header,
    write_truncated_png,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "formats" / "ieee8023-annotations"
CATEGORIES = [{"id": 1, "name": "Right Lung"}, {"id": 2, "name": "Left Lung"}]
MAX_PIXELS = 1_000_000  # curation.max_pixels, as the rule passes it
SEVERITY_HEADER = (
    "## Severity scores (made up),,\n## geographic 0-8, opacity 0-6,,\n"
    "filename,geographic_mean,opacity_mean\n"
)


def curated(*rows: tuple) -> pd.DataFrame:
    """A curated images table of (source, file, width, height) rows."""
    return pd.DataFrame(
        [
            {
                "id": f"{source}/{file}",
                "source": source,
                "patient": f"p{i}",
                "file": file,
                "width": width,
                "height": height,
            }
            for i, (source, file, width, height) in enumerate(rows)
        ]
    )


def make_root(tmp_path: Path, *, boxes=None, masks=None, severity=None) -> Path:
    """A collection root with the given annotation files: `boxes` a COCO dict (or raw text),
    `masks` {file name: uint8 array (or raw bytes)}, `severity` the CSV's text."""
    root = tmp_path / "collection"
    (root / "annotations").mkdir(parents=True)
    if boxes is not None:
        text = boxes if isinstance(boxes, str) else json.dumps(boxes)
        (root / BOXES_FILE).write_text(text, encoding="utf-8")
    if masks is not None:
        (root / MASKS_DIR).mkdir()
        for name, pixels in masks.items():
            if isinstance(pixels, bytes):
                (root / MASKS_DIR / name).write_bytes(pixels)
            else:
                Image.fromarray(pixels).save(root / MASKS_DIR / name)
    if severity is not None:
        (root / SEVERITY_FILE).write_text(severity, encoding="utf-8")
    return root


def coco(images: list, annotations: list, categories=CATEGORIES) -> dict:
    return {"images": images, "annotations": annotations, "categories": categories}


def lung_mask(width: int, height: int) -> np.ndarray:
    """0/255 mask of the left half of the top half: asymmetric both ways."""
    pixels = np.zeros((height, width), np.uint8)
    pixels[: height // 2, : width // 2] = 255
    return pixels


def reasons(annotations, file: str) -> dict[str, str]:
    """entry -> reason of one file's logged entries."""
    rows = annotations.exclusions[annotations.exclusions["file"] == file]
    return dict(zip(rows["entry"], rows["reason"], strict=True))


def check_accounting(annotations) -> None:
    """Per file, used + logged == total, and the log holds exactly the logged entries."""
    files = annotations.summary["files"]
    counts = [files["boxes"]["images"], files["boxes"]["annotations"]]
    counts += [files["masks"], files["severity"]]
    for count in counts:
        assert count["used"] + count["logged"] == count["total"], count
    log = annotations.exclusions
    boxes_logged = files["boxes"]["images"]["logged"] + files["boxes"]["annotations"]["logged"]
    assert (log["file"] == BOXES_FILE).sum() == boxes_logged
    assert (log["file"] == MASKS_DIR).sum() == files["masks"]["logged"]
    assert (log["file"] == SEVERITY_FILE).sum() == files["severity"]["logged"]
    assert annotations.summary["excluded"] == len(log)
    assert sum(annotations.summary["reasons"].values()) == len(log)
    assert list(log.columns) == EXCLUSION_COLUMNS
    assert list(annotations.table.columns) == TABLE_COLUMNS


# --- the shipped examples ---------------------------------------------------------------------


@pytest.fixture
def examples(tmp_path) -> Path:
    # Like ../shared/data, ../shared/formats is beside a checkout of ours, not in a fresh
    # clone elsewhere: the tests that read it skip there, saying why.
    if not EXAMPLES.is_dir():
        pytest.skip(f"annotation examples not found at {EXAMPLES}")
    root = tmp_path / "collection"
    shutil.copytree(EXAMPLES, root / "annotations", ignore=shutil.ignore_patterns("README*"))
    return root


EXAMPLE_IMAGES = curated(
    ("covid", "images/example-case-1-PA.jpeg", 1200, 1000),
    ("covid", "images/unannotated.png", 300, 300),
    ("covid", "images/example-case-2.png", 512, 512),
)


def test_examples_give_box_regions_and_scores(examples):
    ann = read_annotations(examples, EXAMPLE_IMAGES, ["covid"], 8, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    table = ann.table.set_index("file_name")
    assert list(table.index) == ["example-case-1-PA.jpeg", "example-case-2.png"]  # images' order
    assert list(table["region"]) == ["boxes", "boxes"]  # image 2's mask is the wrong size
    assert list(table["boxes"]) == [2, 2]
    # Image 1 (1200 x 1000): column centres 75, 225, ..., 1125; boxes x 150-550 and 650-1070
    # take columns 1-6; row centres 62.5, 187.5, ..., 937.5; y 150/160-750/760: rows 1-5.
    one = np.zeros((8, 8), bool)
    one[1:6, 1:7] = True
    # Image 2 (512 x 512): centres 32, 96, ..., 480; x 60-220 -> columns 1-2, x 290-450 ->
    # columns 5-6; y 80-455 -> rows 1-6.
    two = np.zeros((8, 8), bool)
    two[1:7, [1, 2, 5, 6]] = True
    assert (ann.masks["covid/images/example-case-1-PA.jpeg"] == one).all()
    assert (ann.masks["covid/images/example-case-2.png"] == two).all()
    assert list(table["lung_area"]) == [30 / 64, 24 / 64]
    assert list(table["geographic_mean"]) == [5.3, 1.0]
    assert list(table["opacity_mean"]) == [3.7, 1.3]
    assert reasons(ann, MASKS_DIR) == {
        "example-case-2_mask.png": "size mismatch: mask is 16x12, curated image "
        "covid/images/example-case-2.png is 512x512"
    }
    summary = ann.summary
    assert summary["configured"] is True and summary["applies_to"] == ["covid"]
    assert summary["files"]["boxes"]["images"] == {"total": 2, "used": 2, "logged": 0}
    assert summary["files"]["boxes"]["annotations"] == {"total": 4, "used": 4, "logged": 0}
    assert summary["files"]["masks"] == {
        "path": MASKS_DIR,
        "present": True,
        "total": 1,
        "used": 0,
        "logged": 1,
    }
    assert summary["files"]["severity"]["used"] == 2
    assert summary["per_source"] == {
        "covid": {"images": 3, "lung_region": 2, "mask": 0, "boxes_only": 2, "severity": 2}
    }
    assert summary["reasons"] == {"size mismatch": 1} and summary["excluded"] == 1
    json.dumps(summary, allow_nan=False)  # JSON-able


def test_a_usable_mask_wins_over_boxes(tmp_path):
    images = curated(("covid", "images/a.png", 20, 10))
    root = make_root(
        tmp_path,
        boxes=coco(
            [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 10]}],
        ),
        masks={"a_mask.png": lung_mask(20, 10)},
    )
    ann = read_annotations(root, images, ["covid"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    row = ann.table.iloc[0]
    assert (row["region"], row["boxes"], row["lung_area"]) == ("mask", 1, 4 / 16)
    assert np.isnan(row["geographic_mean"])
    assert ann.masks["covid/images/a.png"][:2, :2].all()
    assert ann.summary["per_source"]["covid"]["mask"] == 1
    assert ann.summary["files"]["severity"] == {
        "path": SEVERITY_FILE,
        "present": False,
        "total": 0,
        "used": 0,
        "logged": 0,
    }


# --- mapping onto the square ------------------------------------------------------------------


def test_box_on_a_wide_image_maps_to_its_share_of_each_axis():
    # W=200: column centres 12.5, 37.5, ..., 187.5; x 0-100 holds the first 4.
    # H=100: row centres 6.25, 18.75, ..., 93.75; y 0-50 holds the first 4.
    square = box_to_square([0, 0, 100, 50], 200, 100, 8)
    expected = np.zeros((8, 8), bool)
    expected[:4, :4] = True
    assert square.dtype == bool and (square == expected).all()
    # A box on the right third of the bottom: x 150-200 -> columns 6, 7; y 80-100 -> rows 6, 7.
    assert np.argwhere(box_to_square([150, 80, 50, 20], 200, 100, 8)).tolist() == [
        [6, 6],
        [6, 7],
        [7, 6],
        [7, 7],
    ]


def test_mask_resizes_as_the_shards_resize_the_image():
    # 20 x 10 image, lung in its top-left 10 x 5 pixels: the top-left 2 x 2 of a 4 x 4 square.
    pixels = lung_mask(20, 10)
    expected = np.zeros((4, 4), bool)
    expected[:2, :2] = True
    assert (mask_to_square(pixels, 4) == expected).all()
    assert (mask_to_square(pixels == 255, 4) == expected).all()  # bool masks too
    assert mask_to_square(pixels, 4).dtype == bool


def test_lung_region_prefers_the_mask():
    mask = np.eye(4, dtype=bool)
    box = np.zeros((4, 4), bool)
    box[0] = True
    other = np.zeros((4, 4), bool)
    other[3] = True
    assert lung_region_square(mask, [box])[0] == "mask"
    kind, region = lung_region_square(None, [box, other])
    assert kind == "boxes" and region.sum() == 8
    assert lung_region_square(None, []) == ("", None)


# --- each class of problem, logged ------------------------------------------------------------


def test_problems_in_the_boxes_file_are_logged_entry_by_entry(tmp_path):
    images = curated(
        ("covid", "images/good.png", 100, 80),
        ("covid", "images/twice.png", 100, 80),
        ("covid", "images/resized.png", 50, 40),
        ("covid", "images/no-size.png", 100, 80),
    )
    entries = [
        {"id": 1, "file_name": "good.png", "width": 100, "height": 80},  # images[0]
        {"id": 2, "file_name": "twice.png", "width": 100, "height": 80},  # images[1]
        {"id": 3, "file_name": "twice.png", "width": 100, "height": 80},  # images[2]
        {"id": 4, "file_name": "elsewhere.png", "width": 100, "height": 80},  # images[3]
        {"id": 5, "file_name": "resized.png", "width": 100, "height": 80},  # images[4]
        {"id": 6, "file_name": "no-size.png", "width": "wide", "height": 0},  # images[5]
        {"id": 7, "width": 100, "height": 80},  # images[6]
    ]
    good = {"image_id": 1, "category_id": 1}
    annotations = [
        {"id": 1, **good, "bbox": [0, 0, 50, 80]},  # used
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 0, 50, 80]},  # used
        {"id": 3, **good},  # bbox missing
        {"id": 4, **good, "bbox": [0, 0, 50]},
        {"id": 5, **good, "bbox": [0, "a", 50, 80]},
        {"id": 6, **good, "bbox": [0, 0, float("nan"), 80]},
        {"id": 7, **good, "bbox": [0, 0, 0, 80]},
        {"id": 8, "image_id": 99, "category_id": 1, "bbox": [0, 0, 10, 10]},
        {"id": 9, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10]},
        {"id": 10, **good, "bbox": [60, 0, 50, 80]},  # 60 + 50 > 100
        {"id": 11, **good, "bbox": [-1, 0, 10, 10]},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]},  # named twice
        {"id": 13, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10]},  # size mismatch
        {"id": 14, **good, "bbox": [0, 0, 1, 1]},  # covers no pixel centre at size 4
    ]
    root = make_root(tmp_path, boxes=coco(entries, annotations))
    ann = read_annotations(root, images, ["covid"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    logged = reasons(ann, BOXES_FILE)
    assert {entry: reason_class(r) for entry, r in logged.items()} == {
        "images[1]": "named twice",
        "images[2]": "named twice",
        "images[3]": "no curated image",
        "images[4]": "size mismatch",
        "images[5]": "malformed",
        "images[6]": "malformed",
        "annotations[2] (id 3)": "malformed",
        "annotations[3] (id 4)": "malformed",
        "annotations[4] (id 5)": "malformed",
        "annotations[5] (id 6)": "malformed",
        "annotations[6] (id 7)": "malformed",
        "annotations[7] (id 8)": "malformed",
        "annotations[8] (id 9)": "malformed",
        "annotations[9] (id 10)": "box outside image",
        "annotations[10] (id 11)": "box outside image",
        "annotations[11] (id 12)": "image entry not used",
        "annotations[12] (id 13)": "image entry not used",
        "annotations[13] (id 14)": "empty box",
    }
    assert logged["images[1]"] == "named twice: 'twice.png' also in images[2]; neither is used"
    assert logged["images[4]"] == (
        "size mismatch: images[] entry is 100x80, curated image covid/images/resized.png is "
        "50x40; its boxes would be placed wrongly"
    )
    assert logged["images[5]"] == (
        "malformed: width 'wide' is not a number; height 0 is not positive"
    )
    assert logged["images[6]"] == "malformed: file_name missing"
    assert logged["annotations[2] (id 3)"] == "malformed: bbox missing"
    assert logged["annotations[3] (id 4)"] == "malformed: bbox [0, 0, 50] is not 4 values"
    assert "non-numeric or non-finite" in logged["annotations[4] (id 5)"]
    assert "non-numeric or non-finite" in logged["annotations[5] (id 6)"]
    assert "width or height <= 0" in logged["annotations[6] (id 7)"]
    assert logged["annotations[7] (id 8)"] == "malformed: image_id 99 is not in images[]"
    assert logged["annotations[8] (id 9)"] == (
        "malformed: category_id 3 is not a lung category (Right Lung: 1, Left Lung: 2)"
    )
    assert logged["annotations[9] (id 10)"] == (
        "box outside image: bbox [60, 0, 50, 80] on a 100x80 image"
    )
    assert logged["annotations[11] (id 12)"].startswith(
        "image entry not used: images[1] ('twice.png') is logged (named twice"
    )
    files = ann.summary["files"]["boxes"]
    assert files["images"] == {"total": 7, "used": 1, "logged": 6}
    assert files["annotations"] == {"total": 14, "used": 2, "logged": 12}
    # The exclusions name the image file of an annotation when its image_id is known.
    rows = ann.exclusions.set_index("entry")
    assert rows.loc["annotations[9] (id 10)", "file_name"] == "good.png"
    assert rows.loc["annotations[7] (id 8)", "file_name"] == ""
    # Only good.png has a region: both boxes, the whole 4 x 4 square.
    assert list(ann.table["file_name"]) == ["good.png"]
    assert (ann.table["boxes"].tolist(), ann.table["lung_area"].tolist()) == ([2], [1.0])


def test_images_entries_sharing_an_id_are_both_logged(tmp_path):
    images = curated(("covid", "images/a.png", 10, 10), ("covid", "images/b.png", 10, 10))
    entries = [
        {"id": 1, "file_name": "a.png", "width": 10, "height": 10},
        {"id": 1, "file_name": "b.png", "width": 10, "height": 10},
    ]
    box = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]
    ann = read_annotations(
        make_root(tmp_path, boxes=coco(entries, box)), images, ["covid"], 4, max_pixels=MAX_PIXELS
    )
    check_accounting(ann)
    assert reasons(ann, BOXES_FILE) == {
        "images[0]": "malformed: id 1 also in images[1]",
        "images[1]": "malformed: id 1 also in images[0]",
        "annotations[0] (id 1)": "image entry not used: images[0] ('a.png') is logged "
        "(malformed: id 1 also in images[1])",
    }
    assert ann.table.empty and ann.masks == {}


def test_problems_with_mask_files_are_logged(tmp_path):
    images = curated(
        ("covid", "images/good.png", 20, 10),
        ("covid", "images/small.jpg", 20, 10),
        ("covid", "images/blank.png", 20, 10),
        ("covid", "images/colour.png", 20, 10),
    )
    masks = {
        "good_mask.png": lung_mask(20, 10),
        "small_mask.png": lung_mask(10, 5),
        "blank_mask.png": np.zeros((10, 20), np.uint8),
        "colour_mask.png": np.zeros((10, 20, 3), np.uint8),
        "stranger_mask.png": lung_mask(20, 10),
        "good.png": lung_mask(20, 10),
    }
    ann = read_annotations(
        make_root(tmp_path, masks=masks), images, ["covid"], 4, max_pixels=MAX_PIXELS
    )
    check_accounting(ann)
    assert reasons(ann, MASKS_DIR) == {
        "blank_mask.png": "empty mask: no pixel >= 128",
        "colour_mask.png": "malformed: mode RGB, not 8-bit grayscale",
        "good.png": "not a mask name: 'good.png' does not end in '_mask.png'",
        "small_mask.png": "size mismatch: mask is 10x5, curated image covid/images/small.jpg "
        "is 20x10",
        "stranger_mask.png": "no curated image: no curated image's file is named 'stranger' "
        "+ extension",
    }
    assert list(ann.exclusions["entry"]) == sorted(masks.keys() - {"good_mask.png"})
    assert ann.summary["files"]["masks"] == {
        "path": MASKS_DIR,
        "present": True,
        "total": 6,
        "used": 1,
        "logged": 5,
    }
    assert ann.table[["file_name", "region"]].values.tolist() == [["good.png", "mask"]]
    assert ann.summary["reasons"] == {
        "empty mask": 1,
        "malformed": 1,
        "no curated image": 1,
        "not a mask name": 1,
        "size mismatch": 1,
    }


REPLACE = "; replace it with the collection's mask or remove it"


@pytest.mark.usefixtures("no_ghostscript")
def test_a_mask_file_that_cannot_be_read_is_one_logged_entry(tmp_path):
    """Under curated images' mask names, every kind of file no PNG reader should decode: each
    is logged with its reason (in annotations/exclusions.csv) and the good mask is used."""
    kinds = ["good", "text", "signature", "truncated", "zero", "bomb", "jpeg", "postscript",
             "pdf", "folder", "fifo", "link", "inner-link"]  # fmt: skip
    images = curated(*[("covid", f"images/{kind}.png", 64, 48) for kind in kinds])
    root = make_root(tmp_path, masks={"good_mask.png": lung_mask(64, 48)})
    folder = root / MASKS_DIR
    (folder / "text_mask.png").write_bytes(b"not a png at all")
    (folder / "signature_mask.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_truncated_png(folder / "truncated_mask.png")
    (folder / "zero_mask.png").write_bytes(b"")
    (folder / "bomb_mask.png").write_bytes(png_header(100_000, 100_000))
    Image.fromarray(lung_mask(64, 48)).save(folder / "jpeg_mask.png", format="JPEG")
    (folder / "postscript_mask.png").write_bytes(ENDLESS_POSTSCRIPT)
    (folder / "pdf_mask.png").write_bytes(b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n")
    (folder / "folder_mask.png").mkdir()
    os.mkfifo(folder / "fifo_mask.png")
    (folder / "link_mask.png").symlink_to("/etc/passwd")
    (folder / "inner-link_mask.png").symlink_to("good_mask.png")
    ann = read_annotations(root, images, ["covid"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    logged = reasons(ann, MASKS_DIR)
    assert all(reason.endswith(REPLACE) for reason in logged.values()), logged
    assert {entry: reason.removesuffix(REPLACE) for entry, reason in logged.items()} == {
        "text_mask.png": "not an image: text_mask.png: not one of PNG",
        "signature_mask.png": "undecodable: signature_mask.png: Truncated File Read",
        "truncated_mask.png": "undecodable: truncated_mask.png: image file is truncated",
        "zero_mask.png": "empty file: zero_mask.png",
        "bomb_mask.png": "too many pixels: 100000x100000 > limit 1000000 (bomb_mask.png)",
        "jpeg_mask.png": "not an image: jpeg_mask.png: not one of PNG",
        "postscript_mask.png": "not an image: postscript_mask.png: PostScript document, "
        "never opened",
        "pdf_mask.png": "not an image: pdf_mask.png: PDF document, never opened",
        "folder_mask.png": "not a regular file: folder_mask.png",
        "fifo_mask.png": "not a regular file: fifo_mask.png",
        "link_mask.png": "not a regular file: link_mask.png: a symbolic link, not followed",
        "inner-link_mask.png": "not a regular file: inner-link_mask.png: a symbolic link, "
        "not followed",
    }
    assert ann.summary["files"]["masks"] == {
        "path": MASKS_DIR,
        "present": True,
        "total": 13,
        "used": 1,
        "logged": 12,
    }
    assert ann.summary["reasons"] == {
        "empty file": 1,
        "not a regular file": 4,
        "not an image": 4,
        "too many pixels": 1,
        "undecodable": 2,
    }
    assert ann.table[["file_name", "region"]].values.tolist() == [["good.png", "mask"]]
    out = tmp_path / "out"
    write_annotations(
        ann,
        table_path=out / "images.csv",
        masks_path=out / "lungs.npz",
        exclusions_path=out / "exclusions.csv",
        summary_path=out / "summary.json",
    )
    written = pd.read_csv(out / "exclusions.csv", dtype=str, keep_default_na=False)
    assert dict(zip(written["entry"], written["reason"], strict=True)) == logged


def test_the_accounting_of_the_masks_folder_fails_on_a_lost_entry(tmp_path, monkeypatch):
    """A mask reader that counted an entry as logged but left it out of the log is a bug, and
    the run stops on it: the check is not one that always passes."""
    from cxr import annotations

    images = curated(("covid", "images/a.png", 4, 4))
    root = make_root(tmp_path, masks={"a_mask.png": b"", "b.png": b"x"})
    read = annotations._read_masks

    def losing(*args):
        part = read(*args)
        part.logged.pop()
        return part

    monkeypatch.setattr(annotations, "_read_masks", losing)
    with pytest.raises(AssertionError, match="accounting: 2 entries logged, 1 in the log"):
        read_annotations(root, images, ["covid"], 4, max_pixels=MAX_PIXELS)


def test_a_mask_of_zeros_and_ones_is_lung_where_one(tmp_path):
    """A binary mask stored as is (0 and 1) is lung where 1; a mask of any other values keeps
    the threshold: lung where >= 128, so its 1s are not lung and an all-zero mask is empty."""
    zero_one = lung_mask(20, 10) // 255
    mixed = lung_mask(20, 10)
    mixed[5:, 10:] = 1  # 0, 1 and 255: the 1s are background
    masks = {
        "binary_mask.png": zero_one,
        "lungvae_mask.png": lung_mask(20, 10),
        "mixed_mask.png": mixed,
        "faint_mask.png": np.where(lung_mask(20, 10) > 0, 100, 1).astype(np.uint8),
        "blank_mask.png": np.zeros((10, 20), np.uint8),
        "ones_mask.png": np.ones((10, 20), np.uint8),
    }
    names = [name.removesuffix("_mask.png") for name in masks] + ["bilevel"]
    images = curated(*[("covid", f"images/{name}.png", 20, 10) for name in names])
    root = make_root(tmp_path, masks=masks)
    Image.fromarray(lung_mask(20, 10) > 0).save(root / MASKS_DIR / "bilevel_mask.png")  # mode 1
    ann = read_annotations(root, images, ["covid"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    assert reasons(ann, MASKS_DIR) == {
        "blank_mask.png": "empty mask: no pixel >= 128",
        "faint_mask.png": "empty mask: no pixel >= 128",
    }
    corner = np.zeros((4, 4), bool)
    corner[:2, :2] = True
    for name in ("binary", "lungvae", "mixed", "bilevel"):
        assert (ann.masks[f"covid/images/{name}.png"] == corner).all(), name
    assert ann.masks["covid/images/ones.png"].all()
    assert (mask_lungs(zero_one) == (lung_mask(20, 10) == 255)).all()
    assert not mask_lungs(np.zeros((2, 2), np.uint8)).any()
    assert mask_lungs(np.array([[0, 1, 255]], np.uint8)).tolist() == [[False, False, True]]


def test_problems_in_the_severity_file_are_logged_by_line(tmp_path):
    images = curated(
        ("covid", "images/a.png", 10, 10),
        ("covid", "images/b#1.png", 10, 10),
        ("covid", "images/c.png", 10, 10),
        ("covid", "images/d.png", 10, 10),
    )
    text = SEVERITY_HEADER + (
        "a.png,8.0,6.0\n"  # line 4: used (ranges are inclusive)
        "b#1.png,0,0\n"  # line 5: used; a '#' is not a comment
        "c.png,2,1\n"  # line 6: named twice
        "\n"  # line 7: blank, skipped
        "c.png,3,1\n"  # line 8: named twice
        "d.png,,2\n"  # line 9: missing
        "d.png,x,2\n"  # line 10: non-numeric (d.png named twice, but malformed first)
        "e.png,9,7\n"  # line 11: both out of range
        "f.png,1,1\n"  # line 12: no curated image
        "## a late comment,,\n"  # line 13: skipped
        "g.png,1,1,5\n"  # line 14: a value beyond the header's columns
    )
    ann = read_annotations(
        make_root(tmp_path, severity=text), images, ["covid"], 4, max_pixels=MAX_PIXELS
    )
    check_accounting(ann)
    assert reasons(ann, SEVERITY_FILE) == {
        "line 6": "named twice: 'c.png' also on line 8; neither is used",
        "line 8": "named twice: 'c.png' also on line 6; neither is used",
        "line 9": "malformed: geographic_mean missing",
        "line 10": "malformed: geographic_mean 'x' is not a number",
        "line 11": "malformed: geographic_mean 9 is outside 0-8; opacity_mean 7 is outside 0-6",
        "line 12": "no curated image: no curated image's file is named 'f.png'",
        "line 14": "malformed: 1 value(s) beyond the header's columns",
    }
    assert ann.summary["files"]["severity"] == {
        "path": SEVERITY_FILE,
        "present": True,
        "total": 9,
        "used": 2,
        "logged": 7,
    }
    table = ann.table
    assert table[["file_name", "geographic_mean", "opacity_mean"]].values.tolist() == [
        ["a.png", 8.0, 6.0],
        ["b#1.png", 0.0, 0.0],
    ]
    assert list(table["region"]) == ["", ""] and table["lung_area"].isna().all()
    assert ann.masks == {}
    assert ann.summary["per_source"]["covid"] == {
        "images": 4,
        "lung_region": 0,
        "mask": 0,
        "boxes_only": 0,
        "severity": 2,
    }


def test_a_file_name_in_two_sources_applies_to_both(tmp_path):
    images = curated(
        ("covid", "images/a.png", 20, 10),
        ("nih", "images/a.png", 20, 10),  # not an annotated source
        ("covid_later", "images/a.png", 20, 10),
    )
    root = make_root(
        tmp_path,
        boxes=coco(
            [{"id": 1, "file_name": "a.png", "width": 20, "height": 10}],
            [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 5]}],
        ),
        masks={"a_mask.png": lung_mask(20, 10)},
        severity=SEVERITY_HEADER + "a.png,4,3\n",
    )
    ann = read_annotations(root, images, ["covid", "covid_later"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    assert list(ann.table["id"]) == ["covid/images/a.png", "covid_later/images/a.png"]
    assert list(ann.table["region"]) == ["mask", "mask"]
    assert list(ann.table["geographic_mean"]) == [4.0, 4.0]
    assert list(ann.masks) == ["covid/images/a.png", "covid_later/images/a.png"]
    assert ann.summary["per_source"]["covid_later"]["lung_region"] == 1
    assert "nih" not in ann.summary["per_source"]
    counts = ann.summary["files"]
    assert counts["boxes"]["images"]["used"] == counts["masks"]["used"] == 1
    assert counts["severity"]["used"] == 1


def test_an_entry_used_for_one_source_only_is_used_and_warned_about(tmp_path, caplog):
    images = curated(("covid", "images/a.png", 20, 10), ("covid_later", "images/a.png", 40, 20))
    root = make_root(tmp_path, masks={"a_mask.png": lung_mask(20, 10)})
    ann = read_annotations(root, images, ["covid", "covid_later"], 4, max_pixels=MAX_PIXELS)
    check_accounting(ann)
    assert list(ann.masks) == ["covid/images/a.png"] and ann.exclusions.empty
    assert "used for covid/images/a.png but not for covid_later/images/a.png" in caplog.text


# --- whole files that cannot be read, and settings --------------------------------------------


def test_absent_files_are_recorded_as_absent(tmp_path):
    ann = read_annotations(
        make_root(tmp_path), curated(("covid", "a.png", 4, 4)), ["covid"], 4, max_pixels=MAX_PIXELS
    )
    check_accounting(ann)
    files = ann.summary["files"]
    assert [files[k]["present"] for k in ("boxes", "masks", "severity")] == [False] * 3
    assert files["boxes"]["annotations"] == {"total": 0, "used": 0, "logged": 0}
    assert ann.table.empty and ann.exclusions.empty
    assert ann.summary["per_source"]["covid"]["images"] == 1


@pytest.mark.parametrize(
    ("boxes", "message"),
    [
        ('{"images": [\n  {"id": 1,}\n]}', r"not valid JSON \(.* at line 2, column"),
        ('{"images": [], "annotations": []}', "no categories list"),
        (json.dumps(coco([], [], [{"id": 1, "name": "Right Lung"}])), "lack 'Left Lung'"),
    ],
)
def test_an_unreadable_boxes_file_is_a_data_error(tmp_path, boxes, message):
    root = make_root(tmp_path, boxes=boxes)
    with pytest.raises(DataError, match=message) as error:
        read_annotations(
            root, curated(("covid", "a.png", 4, 4)), ["covid"], 4, max_pixels=MAX_PIXELS
        )
    assert "imageannotation_ai_lung_bounding_boxes.json" in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("## c,,\nname,geographic,opacity\na.png,1,1\n", "header 'name,geographic,op.* line 2"),
        ("## only comments,,\n\n", "no header line"),
        ('## c,,\nfilename,geographic_mean,opacity_mean\n"a\n.png",1,1\n', "spans lines"),
    ],
)
def test_a_severity_file_without_the_expected_header_is_a_data_error(tmp_path, text, message):
    root = make_root(tmp_path, severity=text)
    with pytest.raises(DataError, match=message) as error:
        read_annotations(
            root, curated(("covid", "a.png", 4, 4)), ["covid"], 4, max_pixels=MAX_PIXELS
        )
    assert "covid-severity-scores.csv" in str(error.value)


def test_a_root_without_annotations_is_a_config_error(tmp_path):
    images = curated(("covid", "a.png", 4, 4))
    with pytest.raises(ConfigError, match="annotations.root .*missing.* does not exist"):
        read_annotations(tmp_path / "missing", images, ["covid"], 4, max_pixels=MAX_PIXELS)
    with pytest.raises(ConfigError, match="annotations.root .* has no annotations/ folder"):
        read_annotations(tmp_path, images, ["covid"], 4, max_pixels=MAX_PIXELS)


# --- no annotations, and the written files ----------------------------------------------------


def test_empty_annotations_have_the_columns_and_zero_counts():
    ann = empty_annotations("the dataset has no expert annotations", size=8)
    assert list(ann.table.columns) == TABLE_COLUMNS and ann.table.empty
    assert list(ann.exclusions.columns) == EXCLUSION_COLUMNS and ann.exclusions.empty
    assert ann.masks == {}
    summary = ann.summary
    assert summary["configured"] is False
    assert summary["note"] == "the dataset has no expert annotations"
    assert summary["files"]["masks"]["total"] == summary["excluded"] == 0
    assert summary["files"]["boxes"]["images"] == {"total": 0, "used": 0, "logged": 0}
    check_accounting(ann)


def test_written_outputs_read_back_and_are_byte_stable(examples, tmp_path):
    ann = read_annotations(examples, EXAMPLE_IMAGES, ["covid"], 8, max_pixels=MAX_PIXELS)
    paths = {}
    for run in ("one", "two"):
        out = tmp_path / run
        paths[run] = {
            "table_path": out / "annotations.csv",
            "masks_path": out / "masks.npz",
            "exclusions_path": out / "exclusions.csv",
            "summary_path": out / "summary.json",
        }
        again = read_annotations(examples, EXAMPLE_IMAGES, ["covid"], 8, max_pixels=MAX_PIXELS)
        write_annotations(again, **paths[run])
    for key, path in paths["one"].items():
        assert path.read_bytes() == paths["two"][key].read_bytes(), key
    with np.load(paths["one"]["masks_path"]) as stored:
        assert stored["ids"].tolist() == list(ann.masks)
        assert stored["masks"].dtype == bool and stored["masks"].shape == (2, 8, 8)
        assert (stored["masks"][1] == ann.masks["covid/images/example-case-2.png"]).all()
    table = pd.read_csv(paths["one"]["table_path"], keep_default_na=False)
    assert table["file_name"].tolist() == ["example-case-1-PA.jpeg", "example-case-2.png"]
    assert table["boxes"].tolist() == [2, 2]
    exclusions = pd.read_csv(paths["one"]["exclusions_path"])
    assert exclusions["entry"].tolist() == ["example-case-2_mask.png"]
    assert json.loads(paths["one"]["summary_path"].read_text()) == ann.summary

    empty = tmp_path / "empty"
    write_annotations(
        empty_annotations("none", size=8),
        table_path=empty / "a.csv",
        masks_path=empty / "m.npz",
        exclusions_path=empty / "e.csv",
        summary_path=empty / "s.json",
    )
    with np.load(empty / "m.npz") as stored:
        assert stored["ids"].shape == (0,) and stored["masks"].shape == (0, 8, 8)
