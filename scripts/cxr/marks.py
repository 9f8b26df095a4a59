"""Burnt-in colour marks: arrows, circles and text that paper authors drew on an X-ray.

X-rays are grayscale, so coloured pixels are marks. They must be found on the decoded image
before it is converted to grayscale, where they would become plain bright or dark strokes."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from cxr.errors import ConfigError

# Modes that cannot hold colour; "I;16", "I;16B", "I;16L", "I;16N" share the prefix.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
# Why a curated image counts as marked (mark_reasons; removed.csv's `reason`).
COLOURED = "coloured annotation mark"
LISTED = "listed in marks.ids"


@dataclass(frozen=True)
class MarkFinding:
    """The largest coloured region of an image and how much of the image is coloured at all."""

    area: float  # fraction of the image's pixels in the largest coloured region (0.0 if none)
    pixels: int  # coloured pixels in that region
    box: tuple[int, int, int, int] | None  # (left, top, right, bottom), right/bottom exclusive
    coloured_fraction: float  # fraction of all pixels whose chroma reaches the threshold


NO_MARKS = MarkFinding(area=0.0, pixels=0, box=None, coloured_fraction=0.0)


def has_no_colour(mode: str) -> bool:
    """True for Pillow modes without colour channels, which cannot carry a colour mark."""
    return mode in GRAY_MODES or mode.startswith("I;")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert to 8-bit RGB, compositing transparency on black as the grayscale conversion does."""
    if img.mode in ("RGBA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img if img.mode == "RGB" else img.convert("RGB")


def find_colour_marks(img: Image.Image, *, chroma_threshold: int) -> MarkFinding:
    """Find the largest 8-connected region of pixels with max(R,G,B) - min(R,G,B) >= threshold.

    Pixels with at most 2 uncoloured pixels between them join one region (see the dilation);
    the box is in the pixel coordinates of `img` as passed (transpose it first for EXIF)."""
    if (
        isinstance(chroma_threshold, bool)
        or not isinstance(chroma_threshold, numbers.Integral)
        or not 1 <= chroma_threshold <= 255
    ):
        raise ConfigError(
            f"marks.chroma_threshold={chroma_threshold!r}: must be an integer from 1 to 255 "
            "(the colour spread max(R,G,B) - min(R,G,B) at which a pixel counts as a mark); "
            "set it in config.yaml"
        )
    total = img.width * img.height
    if has_no_colour(img.mode) or total == 0:
        return NO_MARKS
    rgb = np.asarray(to_rgb(img))
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Channel by channel: 30 times faster than rgb.max(axis=2) on a 1024x1024 image.
    chroma = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    coloured = chroma >= chroma_threshold
    n_coloured = int(np.count_nonzero(coloured))
    if n_coloured == 0:
        return NO_MARKS
    # JPEG blurs colour at half resolution, so a red arrow's chroma is blotchy and its edge
    # pixels drop below the threshold; growing by one pixel first keeps the arrow one region.
    grown = ndimage.binary_dilation(coloured, structure=EIGHT_NEIGHBOURS)
    labels, _ = ndimage.label(grown, structure=EIGHT_NEIGHBOURS)
    per_region = np.bincount(labels[coloured])  # original coloured pixels per grown region
    largest = int(per_region.argmax())  # never 0: every coloured pixel lies in a grown region
    rows, cols = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    inside = (labels[rows, cols] == largest) & coloured[rows, cols]
    ys = np.flatnonzero(inside.any(axis=1))
    xs = np.flatnonzero(inside.any(axis=0))
    box = (
        cols.start + int(xs[0]),
        rows.start + int(ys[0]),
        cols.start + int(xs[-1]) + 1,
        rows.start + int(ys[-1]) + 1,
    )
    pixels = int(per_region[largest])
    return MarkFinding(
        area=pixels / total, pixels=pixels, box=box, coloured_fraction=n_coloured / total
    )


def is_marked(area: float | np.ndarray, *, min_area: float) -> bool | np.ndarray:
    """Whether a largest coloured region of `area` (a fraction of the image: MarkFinding.area,
    or the curated images' `mark_area` column) marks its image: it covers at least `min_area`
    and holds a coloured pixel at all (so min_area 0 means any coloured pixel). Elementwise on
    an array; mark_reasons applies it to the curated rows for the no-marks protocols
    (cxr.split) and the report's counts (cxr.report.marks)."""
    if (
        isinstance(min_area, bool)
        or not isinstance(min_area, numbers.Real)
        or math.isnan(min_area)
        or not 0.0 <= min_area <= 1.0
    ):
        raise ConfigError(
            f"marks.min_area={min_area!r}: must be a fraction of the image from 0 to 1 "
            "(e.g. 0.0005 = 0.05% of its pixels); set it in config.yaml"
        )
    areas = np.asarray(area, dtype=float)
    marked = (areas > 0) & (areas >= min_area)
    return marked if marked.ndim else bool(marked)


def mark_reasons(images: pd.DataFrame, *, min_area: float, ids: Iterable[str]) -> pd.Series:
    """Why each curated image (a row of images.csv) counts as marked, by config's `marks`:
    LISTED when its id is in the hand list `ids` (marks that are not coloured), else COLOURED
    when is_marked by its `mark_area`, else "" (not marked). Indexed like `images`."""
    coloured = is_marked(images["mark_area"].astype(float).to_numpy(), min_area=min_area)
    listed = images["id"].isin(set(ids)).to_numpy()
    reasons = np.where(listed, LISTED, np.where(coloured, COLOURED, ""))
    return pd.Series(reasons, index=images.index, dtype=object)
