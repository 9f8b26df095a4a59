"""Hostile files made in a test (no real data), and a guard against Ghostscript: what the image
and mask tests feed cxr.images.decode_image."""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

REPO = Path(__file__).resolve().parents[1]

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


def fake_gs(folder: Path) -> Path:
    """A `gs` in `folder` that only leaves a marker file (returned) when it is started."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "gs-was-started"
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    script.chmod(0o755)
    return marker


def run_python(
    code: str, *args: str, timeout: float, path_first: Path | None = None
) -> subprocess.CompletedProcess | None:
    """Run `code` (with `args` as sys.argv[1:]) in a fresh Python that imports cxr, with
    `path_first` ahead of PATH; None if it has not finished after `timeout` seconds, when it
    and whatever it started (a Ghostscript stuck in a loop) are killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a stuck gs is killed with it
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = None
    finally:
        with contextlib.suppress(ProcessLookupError):  # it and all it started have ended
            os.killpg(process.pid, signal.SIGKILL)
    if out is None:
        process.communicate()
        return None
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
