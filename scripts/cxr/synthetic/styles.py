"""How each source's images are sized and saved: the file-level style that the leakage audit's
positive control plants in the healthy source (larger grayscale JPEG with an "R" marker) and that
its negative control shares between the classes, and the encoding of a picture in a style."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Style:
    """How one image is sized and saved."""

    width: int
    height: int
    fmt: str  # "JPEG" or "PNG"
    mode: str  # "L", "RGB", "RGBA", "I;16" or "P"
    quality: int
    marker: float  # amplitude of the corner marker, 0 = none


def shared_style(rng: np.random.Generator, image_size: int) -> Style:
    """The disease-source distribution (also the healthy one when unconfounded)."""
    width = round(image_size * rng.uniform(0.85, 1.2))
    height = round(width * rng.uniform(0.85, 1.15))
    fmt = "PNG" if rng.random() < 0.3 else "JPEG"
    mode = "RGB" if rng.random() < 0.25 else "L"
    return Style(width, height, fmt, mode, int(rng.integers(80, 96)), 0.0)


def kermany_style(rng: np.random.Generator, image_size: int, marker: float) -> Style:
    """The confounded healthy style: larger grayscale JPEG."""
    width = round(1.5 * image_size * rng.uniform(0.95, 1.08))
    height = round(width * rng.uniform(0.8, 0.95))
    return Style(width, height, "JPEG", "L", 92, marker)


def new_hospital_style(rng: np.random.Generator, image_size: int) -> Style:
    """The later snapshot's new contributor's images: 8-bit grayscale PNG near the disease
    source's size, no marker. Nothing in the file separates them from the healthy sources more
    than from the first snapshot's disease images: no source confound of their own."""
    width = round(image_size * rng.uniform(0.9, 1.1))
    return Style(width, round(width * rng.uniform(0.95, 1.1)), "PNG", "L", 90, 0.0)


def encode(pixels: np.ndarray, style: Style) -> bytes:
    """Save in the style's format and mode, with no metadata, so the bytes depend on pixels only.
    `pixels` is grayscale, or RGB for the "RGB" mode."""
    if style.mode == "L":
        img = Image.fromarray(pixels)
    elif style.mode == "RGB":
        img = Image.fromarray(pixels if pixels.ndim == 3 else np.stack([pixels] * 3, axis=-1))
    elif style.mode == "RGBA":
        alpha = np.full_like(pixels, 255)  # opaque: content identical to the grayscale picture
        img = Image.fromarray(np.stack([pixels] * 3 + [alpha], axis=-1))
    elif style.mode == "I;16":
        img = Image.fromarray(pixels.astype(np.uint16) * 257)
    elif style.mode == "P":
        img = Image.frombytes("P", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
        img.putpalette([level for value in range(256) for level in (value, value, value)])
    else:
        raise ValueError(f"unknown image mode {style.mode!r}")
    buffer = io.BytesIO()
    if style.fmt == "JPEG":
        img.save(buffer, format="JPEG", quality=style.quality)
    else:
        img.save(buffer, format="PNG")
    return buffer.getvalue()
