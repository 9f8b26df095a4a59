"""Colour marks: drawn arrows, circles and specks on gray X-ray-like images, in several modes."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from conftest import schema_defaults
from cxr import marks
from cxr.errors import ConfigError
from cxr.marks import NO_MARKS, MarkFinding, find_colour_marks, is_marked, mark_reasons

CHROMA = schema_defaults()["marks"]["chroma_threshold"]  # the workflow's setting
RED = (255, 0, 0)
# A 40x8 shaft and a triangular head pointing right: drawn extent x 100..160, y 116..139.
SHAFT = (100, 124, 139, 131)  # PIL rectangles include both corners
HEAD = [(140, 116), (160, 128), (140, 139)]
ARROW_BOX = (100, 116, 161, 140)  # right/bottom exclusive


def xray(size: int = 256, seed: int = 0) -> Image.Image:
    """A gray RGB image: noisy dark background and a bright ellipse, like a chest film."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(60, 20, (size, size)).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(pixels, "L")
    ImageDraw.Draw(img).ellipse((size // 8, size // 10, size * 7 // 8, size * 9 // 10), fill=170)
    return img.convert("RGB")


def draw_arrow(img: Image.Image, fill) -> Image.Image:
    draw = ImageDraw.Draw(img)
    draw.rectangle(SHAFT, fill=fill)
    draw.polygon(HEAD, fill=fill)
    return img


def arrow_pixels() -> int:
    """How many pixels the arrow covers, counted on a blank mask drawn the same way."""
    return int(np.count_nonzero(np.asarray(draw_arrow(Image.new("L", (256, 256)), 255))))


def jpeg(img: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    reopened = Image.open(buffer)
    reopened.load()
    return reopened


def chroma(img: Image.Image) -> np.ndarray:
    rgb = np.asarray(img.convert("RGB")).astype(int)
    return rgb.max(axis=2) - rgb.min(axis=2)


def test_red_arrow_is_found_whole_with_its_drawn_box():
    finding = find_colour_marks(draw_arrow(xray(), RED), chroma_threshold=CHROMA)
    expected = arrow_pixels()
    assert 320 + 200 < expected < 320 + 300  # shaft 40x8, head about 20x24/2
    assert finding.pixels == expected
    assert finding.box == ARROW_BOX
    assert finding.area == pytest.approx(expected / 256**2)
    assert finding.coloured_fraction == finding.area  # the arrow is the only colour
    assert is_marked(finding.area, min_area=0.0005)


def test_jpeg_arrow_stays_one_region_around_the_drawn_arrow():
    img = jpeg(draw_arrow(xray(), RED), quality=75)
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert is_marked(finding.area, min_area=0.0005)
    assert finding.box is not None
    for got, drawn in zip(finding.box, ARROW_BOX, strict=True):
        assert abs(got - drawn) <= 2
    assert finding.pixels == pytest.approx(arrow_pixels(), rel=0.25)
    assert finding.pixels / (finding.coloured_fraction * 256**2) == pytest.approx(1.0, abs=0.02)


def test_jpeg_arrow_is_blotchy_without_the_dilation():
    """Why the dilation: at quality 50 the raw mask splits the arrow into separate pieces."""
    from scipy import ndimage

    img = jpeg(draw_arrow(xray(), RED), quality=50)
    coloured = chroma(img) >= 60
    _, pieces = ndimage.label(coloured, structure=np.ones((3, 3)))
    assert pieces > 1
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding.pixels == np.count_nonzero(coloured)  # all pieces are in one region


def test_gray_text_is_not_a_mark():
    img = xray()
    ImageDraw.Draw(img).text((30, 30), "R  PA  ERECT 12/03/2020", fill=(200, 200, 200))
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding == NO_MARKS
    assert finding.area == 0.0
    assert not is_marked(finding.area, min_area=0.0005)


def test_gray_rgb_jpeg_has_no_chroma_at_all():
    """Gray RGB encodes as Cb = Cr = 128, so JPEG adds no colour noise to a gray image."""
    img = jpeg(xray(), quality=30)
    assert img.mode == "RGB"
    assert chroma(img).max() == 0
    assert find_colour_marks(img, chroma_threshold=1) == NO_MARKS


def test_tinted_film_is_below_the_default_threshold():
    """A scanned film with a cyan cast (chroma 30 to 40 here, as in gr1_lrg-a.jpg) is no mark."""
    gray = np.asarray(xray(), dtype=int)
    tinted = (gray + np.array([-20, 5, 10])).clip(0, 255).astype(np.uint8)
    img = jpeg(Image.fromarray(tinted, "RGB"), quality=75)
    assert 25 <= chroma(img).max() < 60
    assert find_colour_marks(img, chroma_threshold=CHROMA) == NO_MARKS
    assert is_marked(find_colour_marks(img, chroma_threshold=20).area, min_area=0.0005)


def test_threshold_is_inclusive():
    img = Image.new("RGB", (10, 10), (50, 50, 50))
    img.putpixel((3, 4), (100, 40, 40))  # chroma 60
    assert find_colour_marks(img, chroma_threshold=60).box == (3, 4, 4, 5)
    assert find_colour_marks(img, chroma_threshold=61) == NO_MARKS


def test_gray_modes_skip_conversion(monkeypatch):
    def no_conversion(img):
        raise AssertionError(f"converted a {img.mode} image")

    monkeypatch.setattr(marks, "to_rgb", no_conversion)
    bright_stroke = xray().convert("L")
    ImageDraw.Draw(bright_stroke).line((10, 10, 200, 10), fill=255, width=5)
    assert find_colour_marks(bright_stroke, chroma_threshold=CHROMA) == NO_MARKS
    assert find_colour_marks(Image.new("1", (8, 8), 1), chroma_threshold=CHROMA) == NO_MARKS
    assert find_colour_marks(Image.new("LA", (8, 8)), chroma_threshold=CHROMA) == NO_MARKS
    assert find_colour_marks(Image.new("F", (8, 8)), chroma_threshold=CHROMA) == NO_MARKS


def test_palette_image_with_green_circle_is_marked():
    img = Image.fromarray(np.full((200, 200), 90, np.uint8), "L").convert("P")
    img.putpalette([v for i in range(255) for v in (i, i, i)] + [0, 200, 0])  # index 255: green
    ImageDraw.Draw(img).ellipse((60, 60, 120, 120), outline=255, width=3)
    assert img.mode == "P"
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding.box == (60, 60, 121, 121)
    assert finding.pixels == np.count_nonzero(np.asarray(img) == 255)
    assert is_marked(finding.area, min_area=0.0005)


def test_rgba_yellow_mark_counts_and_transparent_colour_does_not():
    img = Image.new("RGBA", (100, 100), (80, 80, 80, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle((10, 20, 19, 29), fill=(255, 255, 0, 255))  # 10x10 opaque yellow
    draw.rectangle((60, 60, 89, 89), fill=(255, 0, 0, 0))  # invisible red: black when composited
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding == MarkFinding(
        area=0.01, pixels=100, box=(10, 20, 20, 30), coloured_fraction=0.01
    )
    assert is_marked(finding.area, min_area=0.0005)


def test_sixteen_bit_image_is_not_marked():
    img = Image.fromarray(np.full((64, 64), 40000, np.uint16))
    assert img.mode == "I;16"
    assert find_colour_marks(img, chroma_threshold=CHROMA) == NO_MARKS


def test_small_speck_is_found_but_not_marked():
    img = Image.new("RGB", (512, 512), (100, 100, 100))
    ImageDraw.Draw(img).rectangle((300, 200, 302, 202), fill=(0, 0, 255))
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding.pixels == 9
    assert finding.box == (300, 200, 303, 203)
    assert finding.area == 9 / 512**2  # 0.0000343, below 0.0005
    assert not is_marked(finding.area, min_area=0.0005)
    assert is_marked(finding.area, min_area=0.0)


def test_largest_of_two_marks_sets_area_and_both_set_coloured_fraction():
    img = Image.new("RGB", (200, 100), (120, 120, 120))
    draw = ImageDraw.Draw(img)
    draw.rectangle((150, 70, 154, 73), fill=(0, 0, 255))  # 5x4 = 20 px blue
    draw.rectangle((10, 10, 19, 19), fill=RED)  # 10x10 = 100 px red
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding == MarkFinding(
        area=100 / 20000, pixels=100, box=(10, 10, 20, 20), coloured_fraction=120 / 20000
    )


@pytest.mark.parametrize(("gap", "pixels"), [(1, 20), (2, 20), (3, 10)])
def test_marks_up_to_two_pixels_apart_are_one_region(gap, pixels):
    img = Image.new("RGB", (40, 10), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.line((5, 0, 5, 9), fill=RED)  # a column of 10 red pixels
    draw.line((6 + gap, 0, 6 + gap, 9), fill=RED)  # another, `gap` black columns to its right
    finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding.pixels == pixels
    assert finding.coloured_fraction == 20 / 400


@pytest.mark.parametrize("bad", [0, 256, -5, 60.5, "60", True])
def test_bad_threshold_names_the_setting(bad):
    with pytest.raises(ConfigError, match=r"marks\.chroma_threshold"):
        find_colour_marks(xray(), chroma_threshold=bad)


def test_bad_threshold_is_refused_even_for_gray_images():
    with pytest.raises(ConfigError, match=r"marks\.chroma_threshold"):
        find_colour_marks(Image.new("L", (8, 8)), chroma_threshold=0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.01", None])
def test_bad_min_area_names_the_setting(bad):
    with pytest.raises(ConfigError, match=r"marks\.min_area"):
        is_marked(NO_MARKS.area, min_area=bad)


def test_min_area_bounds_are_allowed():
    whole = MarkFinding(area=1.0, pixels=4, box=(0, 0, 2, 2), coloured_fraction=1.0)
    assert is_marked(whole.area, min_area=1.0)
    assert is_marked(whole.area, min_area=0)
    assert not is_marked(NO_MARKS.area, min_area=0.0)  # no coloured pixel: never marked


def test_is_marked_works_on_the_curated_column_too():
    areas = np.array([0.0, 0.0001, 0.0005, 0.004])
    assert is_marked(areas, min_area=0.0005).tolist() == [False, False, True, True]
    assert is_marked(areas, min_area=0).tolist() == [False, True, True, True]


def test_mark_reasons_of_curated_rows():
    """Four images.csv rows: an arrow, a speck, a hand-listed image without colour, and a
    listed image that is also coloured (the hand list wins the reason)."""
    images = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "mark_area": [0.004, 0.0001, 0.0, 0.002]},
        index=[10, 11, 12, 13],
    )
    reasons = mark_reasons(images, min_area=0.0005, ids=["c", "d"])
    assert reasons.to_dict() == {
        10: "coloured annotation mark",
        11: "",
        12: "listed in marks.ids",
        13: "listed in marks.ids",
    }
    # min_area 0: any coloured pixel marks the image (the speck too), never an uncoloured one.
    any_colour = mark_reasons(images, min_area=0, ids=[])
    assert list(any_colour) == [marks.COLOURED, marks.COLOURED, "", marks.COLOURED]


def test_1024_image_takes_well_under_a_tenth_of_a_second():
    import time

    img = xray(size=1024)
    draw = ImageDraw.Draw(img)
    for x in range(0, 1000, 50):
        draw.rectangle((x, x, x + 20, x + 6), fill=RED)
    seconds = []
    for _ in range(3):  # the best of three, so a busy machine does not fail the test
        start = time.perf_counter()
        finding = find_colour_marks(img, chroma_threshold=CHROMA)
        seconds.append(time.perf_counter() - start)
    assert min(seconds) < 0.1
    assert finding.pixels == 21 * 7


COVID_IMAGES = "covid-chestxray-dataset-2020-03-18/images"


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("name", "marked"),
    [
        ("radiol.2020200490.fig3.jpeg", True),  # a red arrow drawn by the paper's authors
        ("66298CBF-6F10-42D5-A688-741F6AC84A76.jpeg", True),  # purple cross, area 0.00052
        ("gr1_lrg-a.jpg", False),  # a cyan-tinted scan, chroma at most 50
        ("6CB4EFC6-68FA-4CD5-940C-BEFA8DAFE9A7.jpeg", False),  # a 110-pixel blue dot
    ],
)
def test_real_covid_images(shared_data, name, marked):
    with Image.open(shared_data / COVID_IMAGES / name) as img:
        finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert is_marked(finding.area, min_area=0.0005) is marked


@pytest.mark.realdata
def test_real_red_arrow_box(shared_data):
    with Image.open(shared_data / COVID_IMAGES / "radiol.2020200490.fig3.jpeg") as img:
        finding = find_colour_marks(img, chroma_threshold=CHROMA)
    assert finding.box == (1119, 794, 1273, 847)
