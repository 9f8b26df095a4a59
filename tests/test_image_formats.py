"""Every image file the workflow decodes goes through cxr.images.decode_image: the formats of
its use only (a document named like an image is refused by name and never reaches an
interpreter; every X-ray format still loads), a size checked from the header, and only a
regular file itself (no folder, FIFO or link). Without and with a Ghostscript installed, no
reader starts it, and a PostScript loop comes back as a rejection within seconds."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from cxr.images import IMAGE_FORMATS, ImageRejected, decode_image, load_image
from hostile_files import (
    ENDLESS_POSTSCRIPT,
    REPO,
    fake_gs,
    no_ghostscript,  # noqa: F401 (a fixture, used through pytestmark)
    png_header,
    run_python,
    write_truncated_png,
)

pytestmark = pytest.mark.usefixtures("no_ghostscript")


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("chest.png", ENDLESS_POSTSCRIPT, "PostScript"),
        ("chest.jpeg", b"%!PS\n{ } loop\n", "PostScript"),
        ("scan.tif", b"\xc5\xd0\xd3\xc6" + b"\x00" * 28 + ENDLESS_POSTSCRIPT, "EPS"),
        ("report.png", b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n", "PDF"),
    ],
)
def test_documents_named_like_images_are_refused_unopened(tmp_path, name, data, kind):
    path = tmp_path / name
    path.write_bytes(data)
    started = time.monotonic()
    with pytest.raises(ImageRejected) as caught:
        load_image(path, max_pixels=10**7)
    assert time.monotonic() - started < 5
    assert caught.value.reason == "not an image"
    assert kind in caught.value.detail and name in caught.value.detail


def test_a_format_outside_the_allow_list_is_not_an_image(tmp_path):
    path = tmp_path / "x.png"
    Image.new("L", (40, 40), 128).save(path, format="PCX")  # Pillow reads PCX; we do not
    with pytest.raises(ImageRejected, match="not an image") as caught:
        load_image(path, max_pixels=10**7)
    assert "not one of PNG, JPEG" in caught.value.detail


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "JPEG2000", "PPM"])
def test_every_allowed_format_loads(tmp_path, fmt):
    assert fmt in IMAGE_FORMATS
    pixels = (np.arange(48 * 40, dtype=np.uint32) % 251).astype(np.uint8).reshape(40, 48)
    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(pixels).save(path, format=fmt)
    loaded, info = load_image(path, max_pixels=10**7)
    assert loaded.shape == (40, 48) and info.format == fmt


def test_every_reason_decode_image_gives_is_in_the_bad_data_page():
    """The reasons its docstring lists (each test here raises one) are the page's rows."""
    listed = decode_image.__doc__.split("Raises ImageRejected with one of:")[1]
    reasons = [" ".join(r.split()) for r in listed.rstrip(". \n").split(",")]
    assert len(reasons) == 9 and "too many pixels" in reasons, reasons
    page = (REPO / "docs" / "bad-data.md").read_text(encoding="utf-8")
    assert [r for r in reasons if f"`{r}`" not in page] == []


def test_decode_image_opens_no_format_it_has_not_vetted(tmp_path):
    path = tmp_path / "x.eps"
    path.write_bytes(ENDLESS_POSTSCRIPT)
    with (
        pytest.raises(ValueError, match=r"\['EPS'\] not among IMAGE_FORMATS"),
        decode_image(path, formats=("PNG", "EPS"), max_pixels=10**7),
    ):
        pass


def _folder(path):
    path.mkdir()


def _link_outside(path):
    outside = path.parent.parent / "outside.png"
    Image.new("L", (40, 40), 128).save(outside)
    path.symlink_to(outside)


def _link_inside(path):
    Image.new("L", (40, 40), 128).save(path.parent / "target.png")
    path.symlink_to("target.png")


@pytest.mark.parametrize(
    ("make", "reason", "detail"),
    [
        (_folder, "not a regular file", "x.png"),
        (os.mkfifo, "not a regular file", "x.png"),  # opened, it would wait for a writer
        (_link_outside, "not a regular file", "x.png: a symbolic link, not followed"),
        (_link_inside, "not a regular file", "x.png: a symbolic link, not followed"),
        (write_truncated_png, "undecodable", "x.png: image file is truncated"),
        (lambda p: p.write_bytes(png_header(100_000, 100_000)), "too many pixels",
         "100000x100000 > limit 10000000 (x.png)"),
    ],
)  # fmt: skip
def test_each_hostile_file_is_refused_with_its_reason(tmp_path, make, reason, detail):
    """What test_curate.py and test_hostile.py do not already feed load_image: the entry itself
    is refused (a link even to a good image: curation hands load_image the resolved target,
    and every later job reads that), and a bomb's header alone is enough to refuse it."""
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "x.png"
    make(path)
    started = time.monotonic()
    with pytest.raises(ImageRejected) as caught:
        load_image(path, max_pixels=10**7)
    assert time.monotonic() - started < 5
    assert caught.value.reason == reason
    assert caught.value.detail.endswith(detail), caught.value.detail


# The readers, in a fresh Python with the PATH a test gives: for each document named in
# sys.argv[2:] (DOCUMENTS), a source image and a lung mask named like PNGs and holding its bytes
# (from sys.argv[1]/<name>). Prints each image's rejection and mask folder's log as JSON. For
# "allow-list only", the refusal by leading bytes is switched off, to show that the formats
# allowed keep the EPS plugin from ever seeing the file on their own.
READERS = """
import json, sys
from pathlib import Path
import pandas as pd
import cxr.images
from cxr.annotations import MASKS_DIR, read_annotations
from cxr.images import ImageRejected, load_image

magic = dict(cxr.images._DOCUMENT_MAGIC)
images = pd.DataFrame([{"id": "covid/images/chest.png", "source": "covid", "patient": "1",
                        "file": "images/chest.png", "width": 64, "height": 64}])
out = {}
for name in sys.argv[2:]:
    data = (Path(sys.argv[1]) / name).read_bytes()
    folder = Path(sys.argv[1]) / f"{name}.collection"
    (folder / MASKS_DIR).mkdir(parents=True)
    (folder / "chest.png").write_bytes(data)
    (folder / MASKS_DIR / "chest_mask.png").write_bytes(data)
    cxr.images._DOCUMENT_MAGIC.clear()
    if name != "allow-list only":
        cxr.images._DOCUMENT_MAGIC.update(magic)
    try:
        load_image(folder / "chest.png", max_pixels=10**7)
        image = None
    except ImageRejected as exc:
        image = [exc.reason, exc.detail]
    found = read_annotations(folder, images, ["covid"], 8, max_pixels=10**7)
    masks = found.summary["files"]["masks"]
    out[name] = {"image": image, "masks": [masks["used"], masks["logged"]],
                 "log": found.exclusions[["entry", "reason"]].values.tolist()}
print(json.dumps(out))
"""

# Pillow as the workflow called it before decode_image: every plugin tried, the EPS one
# included, which loads through Ghostscript.
PLAIN_OPEN = """
import sys
from PIL import Image
Image.open(sys.argv[1]).load()
"""

# name -> (bytes, how the refusal names the document, or None where the allow-list refuses)
DOCUMENTS = {
    "postscript": (ENDLESS_POSTSCRIPT, "PostScript document, never opened"),
    "eps-binary": (
        b"\xc5\xd0\xd3\xc6" + b"\x00" * 28 + ENDLESS_POSTSCRIPT,
        "EPS (binary header) document, never opened",
    ),
    "allow-list only": (ENDLESS_POSTSCRIPT, None),
}


def run_readers(tmp_path, names: list[str], **kwargs) -> tuple[dict, float]:
    """What READERS found for each document, and the seconds they took, start-up included."""
    for name in names:
        (tmp_path / name).write_bytes(DOCUMENTS[name][0])
    started = time.monotonic()
    result = run_python(READERS, str(tmp_path), *names, **kwargs)
    seconds = time.monotonic() - started
    assert result is not None, "the readers did not finish"
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout), seconds


def assert_refused(found: dict, name: str) -> None:
    said = DOCUMENTS[name][1]
    image = said or f"not one of {', '.join(IMAGE_FORMATS)}"
    assert found["image"] == ["not an image", f"chest.png: {image}"]
    assert found["masks"] == [0, 1]
    assert found["log"] == [
        [
            "chest_mask.png",
            f"not an image: chest_mask.png: {said or 'not one of PNG'}; replace it with the "
            "collection's mask or remove it",
        ]
    ]


def test_the_fake_gs_sees_a_call_to_ghostscript(tmp_path):
    """The control of the next test: Pillow's plain open of a PostScript file starts the `gs`
    first on PATH, and the stand-in's marker says so."""
    marker = fake_gs(tmp_path / "bin")
    (tmp_path / "x.png").write_bytes(ENDLESS_POSTSCRIPT)
    result = run_python(PLAIN_OPEN, str(tmp_path / "x.png"), timeout=60, path_first=marker.parent)
    assert result is not None and result.returncode != 0
    assert marker.exists()


def test_no_reader_starts_ghostscript(tmp_path):
    marker = fake_gs(tmp_path / "bin")
    found, _ = run_readers(tmp_path, list(DOCUMENTS), timeout=60, path_first=marker.parent)
    for name in DOCUMENTS:
        assert_refused(found[name], name)
    assert not marker.exists(), "a reader started gs"


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript not installed")
def test_with_ghostscript_installed_a_postscript_loop_is_refused_within_seconds(tmp_path):
    """The real `gs`: Pillow's plain open runs the loop and never returns (the control, killed
    after 2 s with the gs it started); both readers refuse the file at once."""
    (tmp_path / "x.png").write_bytes(ENDLESS_POSTSCRIPT)
    assert run_python(PLAIN_OPEN, str(tmp_path / "x.png"), timeout=2) is None
    names = ["postscript", "allow-list only"]
    found, seconds = run_readers(tmp_path, names, timeout=30)
    for name in names:
        assert_refused(found[name], name)
    assert seconds < 15  # a fresh Python importing pandas; the readers take milliseconds
