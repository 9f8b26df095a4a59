"""Hostile files made in a test (no real data), and a guard against Ghostscript: what the image
and mask tests feed cxr.images.decode_image."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

# An endless PostScript loop: Ghostscript would run it forever.
ENDLESS_POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n{ } loop\nshowpage\n"


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares an 8-bit grayscale width x height image and holds no pixels: a
    decompression bomb's header, a few dozen bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def write_truncated_png(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    """A noisy grayscale PNG cut in the middle of its pixel data."""
    pixels = np.random.default_rng(0).integers(0, 255, size[::-1], dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def no_ghostscript(monkeypatch):
    """Fail loudly if anything hands a file to Pillow's EPS plugin (which calls Ghostscript)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the EPS plugin was asked to load a file")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", refuse)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)
