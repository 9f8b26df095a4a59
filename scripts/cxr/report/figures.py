"""Pictures embedded in the report as PNG data: URIs: the workflow's figure files, thumbnails
of curated images, crops around burnt-in marks, and the curation-flow figure."""

from __future__ import annotations

import base64
import io
import tempfile
from pathlib import Path

from PIL import Image, ImageOps

from cxr.errors import DataError
from cxr.images import IMAGE_FORMATS, ImageRejected, decode_image, load_image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_data_uri(data: bytes) -> str:
    """PNG bytes as a data: URI, so the page loads nothing from outside."""
    if not data.startswith(PNG_MAGIC):
        raise DataError("report: an embedded figure is not a PNG (bad magic bytes)")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_file_uri(path: str | Path) -> str:
    """The PNG at `path`, a declared input of rule render_report, as a data: URI."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: figure missing; rerun the rule that writes it")
    data = path.read_bytes()
    if not data.startswith(PNG_MAGIC):
        raise DataError(f"{path} is not a PNG; rerun the rule that writes it")
    return png_data_uri(data)


def curation_flow_uri(flow: dict) -> str:
    """cxr.plots.curation_flow drawn into a temporary file, returned as a data: URI."""
    from cxr import plots  # matplotlib is slow to import; only needed here

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flow.png"
        plots.curation_flow(flow, path)
        return png_data_uri(path.read_bytes())


def thumbnail_uri(path: Path, *, size: int, max_pixels: int) -> str:
    """A small grayscale PNG of the image (decoded the way curation decodes it)."""
    pixels, _ = load_image(path, max_pixels=max_pixels)
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return png_data_uri(buffer.getvalue())


def crop_uri(
    path: Path, box: str, *, max_pixels: int, size: int = 160, margin: float = 0.6
) -> str | None:
    """A PNG data: URI of the region `box` ("left top right bottom") of the image at `path`,
    widened by `margin` of its size on each side, in colour (the marks are colour)."""
    try:
        with decode_image(path, formats=IMAGE_FORMATS, max_pixels=max_pixels) as img:
            # The box was measured on the image as displayed (EXIF orientation applied).
            img = ImageOps.exif_transpose(img).convert("RGB")
            left, top, right, bottom = (int(v) for v in box.split())
            w, h = right - left, bottom - top
            pad_x, pad_y = int(margin * max(w, 16)), int(margin * max(h, 16))
            region = (
                max(0, left - pad_x),
                max(0, top - pad_y),
                min(img.width, right + pad_x),
                min(img.height, bottom + pad_y),
            )
            crop = img.crop(region)
            # Scale to `size` on the long side, up as well as down: marks on small images
            # would otherwise be a few pixels wide in the report.
            scale = size / max(crop.size)
            crop = crop.resize(
                (max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS,
            )
            buffer = io.BytesIO()
            crop.save(buffer, format="PNG")
    except (OSError, ValueError, ImageRejected):
        return None
    return png_data_uri(buffer.getvalue())
