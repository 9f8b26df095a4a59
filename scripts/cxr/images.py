"""Image checks: safe paths, decoding with Pillow, pixel hashes and size limits.

`decode_image` is the one place any image file of the workflow is decoded (source images here,
lung masks in cxr.annotations, report crops); tests/test_lint.py fails if another module calls
Image.open. Every failure becomes an `ImageRejected` with a short machine-readable reason, so
the caller can log it as an exclusion instead of crashing."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr.marks import find_colour_marks

# The formats X-ray sources hold, and the only ones decode_image lets Pillow try (a use may
# narrow them: masks are PNG). Pillow would otherwise hand a PostScript, EPS or PDF file
# (whatever its name) to Ghostscript, which runs it as a program, with no time limit; each of
# these Pillow decodes in-process (its own code or a linked library), never through another
# program. Anything else is "not an image".
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP", "JPEG2000", "PPM")
# Leading bytes of documents that must never reach an interpreter, named in the exclusion log.
_DOCUMENT_MAGIC = {
    b"%!PS": "PostScript",
    b"\xc5\xd0\xd3\xc6": "EPS (binary header)",
    b"%PDF": "PDF",
}

# Pillow only warns above MAX_IMAGE_PIXELS and errors at twice that; we want our own limit to be
# a hard, explicit exclusion, so Pillow's global is switched off and checked here instead.
Image.MAX_IMAGE_PIXELS = None


class ImageRejected(Exception):
    """An image that cannot be used; `reason` is the exclusion reason written to the log."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What curation records about a decoded image."""

    width: int
    height: int
    mode: str
    format: str
    pixel_sha256: str
    bit_depth: int
    # Largest coloured region (burnt-in annotation marks) as a share of the image, and its box
    # (left, top, right, bottom) as displayed; 0.0 and "" when not measured or none found.
    mark_area: float = 0.0
    mark_box: str = ""


def resolve_inside(root: Path, relative: str) -> Path:
    """Join `relative` to `root`, refusing absolute paths, `..` and symlinks that leave `root`,
    and names no file system can hold (a NUL byte, a name or path over its length limits)."""
    if not relative or not relative.strip():
        raise ImageRejected("path empty", repr(relative))
    if "\0" in relative:
        raise ImageRejected("file name has a NUL byte", _shorten(relative))
    check_name_length(root, relative)
    if os.path.isabs(relative) or relative.startswith(("/", "\\")):
        raise ImageRejected("path outside data root", f"absolute path {relative!r}")
    if any(part == ".." for part in Path(relative).parts):
        raise ImageRejected("path outside data root", f"'..' in {relative!r}")
    root_real = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(root / relative))
    if not candidate.is_relative_to(root_real):
        raise ImageRejected("path outside data root", f"{relative!r} resolves outside it")
    return candidate


def check_name_length(root: Path, relative: str) -> None:
    """Refuse a path whose part or whole is longer than the file system under `root` allows
    (a shifted metadata row can put a paragraph of notes in `filename`)."""
    name_max, path_max = _limit(root, "PC_NAME_MAX", 255), _limit(root, "PC_PATH_MAX", 4096)
    longest = max(len(part.encode("utf-8", "surrogateescape")) for part in relative.split("/"))
    if longest > name_max:
        raise ImageRejected(
            "file name too long", f"a part of {longest} bytes > {name_max}: {_shorten(relative)}"
        )
    length = len(os.fsencode(os.path.join(root, relative)))
    if length > path_max:
        raise ImageRejected(
            "file name too long", f"path of {length} bytes > {path_max}: {_shorten(relative)}"
        )


def _limit(root: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(root, name)
    except (OSError, ValueError):  # no such root, or a system without the setting
        return default


def _shorten(text: str, keep: int = 80) -> str:
    """`text` as a quoted literal (control characters escaped), cut to `keep` characters."""
    shown = repr(text[:keep])
    return f"{shown} ... ({len(text)} characters)" if len(text) > keep else shown


BIT_DEPTH = {
    "1": 1,
    "L": 8,
    "P": 8,
    "RGB": 8,
    "RGBA": 8,
    "CMYK": 8,
    "LA": 8,
    "YCbCr": 8,
    "I;16": 16,
    "I;16B": 16,
    "I;16L": 16,
    "I": 32,
    "F": 32,
}


def to_grayscale_array(img: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an 8-bit grayscale array (16-bit scaled, alpha dropped)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        return np.round((arr - arr.min()) / span * 255.0).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img.convert("L"), dtype=np.uint8)


@contextmanager
def decode_image(
    path: Path, *, formats: tuple[str, ...], max_pixels: int, min_side: int = 1
) -> Iterator[Image.Image]:
    """The one way the workflow decodes an image file (an X-ray, a lung mask): the file itself,
    never a link or what it points to, in one of `formats`, its size checked from the header
    against `max_pixels` and `min_side` before any pixel is decoded. Yields the decoded image;
    the file is closed when the block ends.

    Raises ImageRejected with one of: file missing, file name too long, unreadable, not a
    regular file, empty file, not an image, too many pixels, too small, undecodable."""
    unvetted = sorted(set(formats) - set(IMAGE_FORMATS))
    if unvetted:
        # A caller's bug, not the data's: a format outside IMAGE_FORMATS may run a program.
        raise ValueError(f"decode_image: {unvetted} not among IMAGE_FORMATS {IMAGE_FORMATS}")
    with _regular_file(path) as handle:
        img = _decode(handle, path, formats=formats, max_pixels=max_pixels, min_side=min_side)
        try:
            yield img
        finally:
            img.close()


def _decode(
    handle: BinaryIO, path: Path, *, formats: tuple[str, ...], max_pixels: int, min_side: int
) -> Image.Image:
    head = handle.read(8)
    for magic, kind in _DOCUMENT_MAGIC.items():
        if head.startswith(magic):
            raise ImageRejected("not an image", f"{path.name}: {kind} document, never opened")
    handle.seek(0)
    try:
        # Pillow's own bomb guard is off (MAX_IMAGE_PIXELS above); should anything turn it
        # back on, its warning is an exclusion here, never silenced.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # `formats` makes Pillow try only those plugins, so the format is decided from the
            # header, before decoding: no other plugin ever sees the file.
            img = Image.open(handle, formats=formats)
            width, height = img.size
            if width * height > max_pixels:
                raise ImageRejected(
                    "too many pixels", f"{width}x{height} > limit {max_pixels} ({path.name})"
                )
            if min(width, height) < min_side:
                raise ImageRejected("too small", f"{width}x{height} < {min_side} ({path.name})")
            img.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected(
            "not an image", f"{path.name}: not one of {', '.join(formats)}"
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        zlib.error,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise ImageRejected("undecodable", f"{path.name}: {exc}") from None
    return img


@contextmanager
def _regular_file(path: Path) -> Iterator[BinaryIO]:
    """`path` open for reading if it is a non-empty regular file; a link (to anything, inside
    the data or out) is refused, not followed."""
    try:
        status = path.lstat()
    except OSError as exc:
        raise _unopenable(path, exc) from None
    if stat.S_ISLNK(status.st_mode):
        raise ImageRejected("not a regular file", f"{path}: a symbolic link, not followed")
    if not stat.S_ISREG(status.st_mode):
        raise ImageRejected("not a regular file", str(path))
    if status.st_size == 0:
        raise ImageRejected("empty file", str(path))
    try:
        # Should the entry be swapped after lstat, O_NOFOLLOW fails on a link and O_NONBLOCK
        # returns at once on a FIFO (instead of waiting for a writer); fstat then refuses both.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise _unopenable(path, exc) from None
    with os.fdopen(descriptor, "rb") as handle:
        now = os.fstat(handle.fileno())
        if (now.st_dev, now.st_ino) != (status.st_dev, status.st_ino):
            raise ImageRejected("not a regular file", f"{path}: replaced while being opened")
        yield handle


def _unopenable(path: Path, exc: OSError) -> ImageRejected:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ImageRejected("file missing", str(path))
    if exc.errno == errno.ELOOP:
        return ImageRejected("not a regular file", f"{path}: a symbolic link, not followed")
    if exc.errno == errno.ENAMETOOLONG:
        return ImageRejected("file name too long", _shorten(str(path)))
    return ImageRejected("unreadable", f"{path}: {exc.strerror}")


def load_image(
    path: Path, *, max_pixels: int, min_side: int = 1, chroma_threshold: int | None = None
) -> tuple[np.ndarray, ImageInfo]:
    """Decode an X-ray (decode_image, IMAGE_FORMATS), apply EXIF orientation, return 8-bit
    grayscale pixels and facts; with `chroma_threshold`, also measure coloured marks (they
    vanish in grayscale). Raises ImageRejected with one of decode_image's reasons."""
    with decode_image(path, formats=IMAGE_FORMATS, max_pixels=max_pixels, min_side=min_side) as img:
        fmt, mode = img.format or "unknown", img.mode
        try:
            img = ImageOps.exif_transpose(img)
            width, height = img.size  # as displayed, after EXIF orientation
            marks = (
                None
                if chroma_threshold is None
                else find_colour_marks(img, chroma_threshold=chroma_threshold)
            )
            pixels = to_grayscale_array(img)
        except (OSError, SyntaxError, ValueError) as exc:  # EXIF that does not parse, say
            raise ImageRejected("undecodable", f"{path.name}: {exc}") from None
    digest = hashlib.sha256()
    digest.update(f"{pixels.shape[0]}x{pixels.shape[1]}:".encode())
    digest.update(pixels.tobytes())
    info = ImageInfo(
        width=int(width),
        height=int(height),
        mode=mode,
        format=fmt,
        pixel_sha256=digest.hexdigest(),
        bit_depth=BIT_DEPTH.get(mode, 8),
        mark_area=round(marks.area, 6) if marks else 0.0,
        mark_box=" ".join(map(str, marks.box)) if marks and marks.box else "",
    )
    return pixels, info
