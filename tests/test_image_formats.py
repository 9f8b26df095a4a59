"""Images are opened with an allow-list of formats: a document (PostScript, EPS, PDF) named like
an image is refused by name and never reaches an interpreter; every X-ray format still loads."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from cxr.images import IMAGE_FORMATS, ImageRejected, load_image

# An endless PostScript loop: Ghostscript would run it forever.
ENDLESS_POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n{ } loop\nshowpage\n"


@pytest.fixture(autouse=True)
def no_ghostscript(monkeypatch):
    """Fail loudly if anything hands a file to Pillow's EPS plugin (which calls Ghostscript)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the EPS plugin was asked to load a file")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", refuse)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)


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
