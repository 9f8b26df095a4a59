"""Every image file the workflow decodes goes through cxr.images.decode_image: the formats of
its use only (a document named like an image is refused by name and never reaches an
interpreter; every X-ray format still loads), a size checked from the header, and only a
regular file itself (no folder, FIFO or link)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from cxr.images import IMAGE_FORMATS, ImageRejected, decode_image, load_image
from hostile_files import (
    ENDLESS_POSTSCRIPT,
    no_ghostscript,  # noqa: F401 (a fixture, used through pytestmark)
    png_header,
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
