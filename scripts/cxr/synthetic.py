"""A small synthetic data set laid out exactly like the real sources, generated from a seed.

Three folders mirror `../shared/data`: `covid-chestxray-dataset/` (ieee8023 metadata.csv of
March 2020 + images/), `kermany-normal/` (healthy, Kermany names) and `nih-nofinding/` (healthy
adults, NIH names). Disease images carry bright opacities inside the lungs (`signal`). Each healthy
image takes, with probability `confound`, a source style that carries no pathology: an "R" marker
of amplitude `confound` in the top-left corner, larger size, grayscale JPEG; this is the positive
control of the leakage audit. With `confound=0` both classes share one distribution of
size, format, mode and border content (the negative control); healthy files then keep their
`.jpeg` names even when the drawn format is PNG, so that file names never separate the classes.
The planted faults of the real snapshot (missing file, truncated file, duplicate image under two
patient ids, HTML in a note, a space in a name) are listed in the returned summary.

Every image of one patient shows the same chest (an `Anatomy` drawn from a stream keyed by the
patient id: body, lungs, heart, ribs, position); only pose, opacities, gain, noise and marker vary
between their images, so an image-level split leaks patients as it does on the real data. CT
slices keep a look of their own. A fraction `marks` of the COVID-19 X-rays free of planted faults
carry a red arrow pointing at a lung, as published figures do, and are saved in RGB; the summary
lists them as `coloured_marks`. Marks come from streams of their own: they change no other image.

Where each opacity, marker and arrow was drawn is written beside the three folders, in
`ground_truth.csv` (never inside a source root, where curation must account for every file): the
truth that saliency maps are checked against. Training never reads it.

The collection's expert annotations, which its snapshots ship from April 2020 on, are written as
its `annotations/` folder (`write_annotations`): lung boxes (COCO JSON), lung masks (lungVAE
PNGs) and severity scores (CSV) of the COVID-19 PA X-rays free of planted faults, derived from the
lungs and opacities each picture was drawn with (`render_chest`'s `findings`; the severity rule is
`severity_scores`). Each file covers its own share of the images and carries one bad entry of
each class a reader must catch, listed in the summary under `annotations`. The folder goes under
the later snapshot's root, covering the first snapshot's files copied there too, or under the
first snapshot's root when there is no later one. A stream of its own: no other file changes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cxr.errors import ConfigError, DataError
from cxr.io import atomic_open

# Column names of ieee8023/covid-chestxray-dataset at 2020-03-18, including the leading space of
# " url" and the unnamed trailing column that makes every line end with a comma.
METADATA_COLUMNS = [
    "Patientid", "offset", "sex", "age", "finding", "survival", "view", "modality", "date",
    "location", "filename", "doi", " url", "license", "clinical notes", "other notes", "",
]  # fmt: skip
DISEASE_DIR = "covid-chestxray-dataset"
GROUND_TRUTH_FILE = "ground_truth.csv"
# One row per planted thing: where it sits in [0, 1] image coordinates (x right, y down), which
# hold after the shards' resize to a square. An opacity is a Gaussian: its box is centre +- 2
# sigma, where it has fallen to e^-2 (14%) of its peak.
GROUND_TRUTH_COLUMNS = ["source_dir", "file", "kind", "x0", "y0", "x1", "y1", "cx", "cy", "sigma"]
HEALTHY_DIR = "kermany-normal"
EXTERNAL_DIR = "nih-nofinding"
LATER_DIR = "covid-chestxray-dataset-later"
# The annotation files of the collection's later snapshots, under the collection's root.
ANNOTATIONS_DIR = "annotations"
BOXES_FILE = "imageannotation_ai_lung_bounding_boxes.json"
MASKS_DIR = "lungVAE-masks"
SEVERITY_FILE = "covid-severity-scores.csv"
SCRIPT_NOTE = "<script>alert(1)</script>"
ARROW_RGB = (220, 30, 30)  # the red of the arrows that published figures point at findings with
BORDER = 0.125  # outer strip (fraction of each side) that holds no lung content
# Where a patient's thorax sits varies by up to JITTER, and between their images by up to POSE;
# together no more than the 0.02 that keeps the lungs inside the border strip.
JITTER = 0.015
MARKER_SIDE = 0.09  # the healthy source's label block, a fraction of each side
POSE = JITTER / 3

# The letter "R" as a 5x7 bitmap: the source marker burnt into the healthy images.
_R_GLYPH = np.array(
    [
        [1, 1, 1, 1, 0],
        [1, 0, 0, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 0, 1],
    ],
    dtype=np.float64,
)
_OTHER_FINDINGS = [("SARS", 2), ("SARS", 2), ("Streptococcus", 2), ("ARDS", 1)]
_LOCATIONS = [
    "",
    "",
    "Changhua Christian Hospital, Changhua City, Taiwan",
    "Myongji Hospital, Goyang, Korea",
    "Laniado Hospital, Netanya, Israel",
]
_LICENSES = ["", "", "CC BY", "CC BY-NC-SA", "Apache 2.0"]
_DATES = ["2020", "2020", "Mar 4, 2020", "March 10, 2020", "February 6, 2020"]
_NOTES = [
    "",
    "",
    "diffuse infiltrates in the bilateral lower lungs",
    "Bilateral patchy opacities, more extensive in the left lung.",
    'Ground-glass opacities; "crazy paving" pattern in the lower lobes',
]


@dataclass(frozen=True)
class _Style:
    """How one image is sized and saved."""

    width: int
    height: int
    fmt: str  # "JPEG" or "PNG"
    mode: str  # "L", "RGB", "RGBA", "I;16" or "P"
    quality: int
    marker: float  # amplitude of the corner marker, 0 = none


def _shared_style(rng: np.random.Generator, image_size: int) -> _Style:
    """The disease-source distribution (also the healthy one when unconfounded)."""
    width = round(image_size * rng.uniform(0.85, 1.2))
    height = round(width * rng.uniform(0.85, 1.15))
    fmt = "PNG" if rng.random() < 0.3 else "JPEG"
    mode = "RGB" if rng.random() < 0.25 else "L"
    return _Style(width, height, fmt, mode, int(rng.integers(80, 96)), 0.0)


def _kermany_style(rng: np.random.Generator, image_size: int, marker: float) -> _Style:
    """The confounded healthy style: larger grayscale JPEG."""
    width = round(1.5 * image_size * rng.uniform(0.95, 1.08))
    height = round(width * rng.uniform(0.8, 0.95))
    return _Style(width, height, "JPEG", "L", 92, marker)


def _soft_ellipse(xx, yy, cx, cy, ax, ay, edge=0.06) -> np.ndarray:
    radius = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    return 1.0 / (1.0 + np.exp((radius - 1.0) / edge))


@dataclass(frozen=True)
class Anatomy:
    """One patient's chest in [0, 1] image coordinates: what all their images share."""

    shift: tuple[float, float]  # where the thorax sits in the frame
    background: float
    body_level: float
    body_centre_y: float
    body_axes: tuple[float, float]
    lung_axes: tuple[float, float]
    lung_dy: float  # the lungs' centre relative to the frame's middle
    spread: float  # half the distance between the two lungs' centres
    lung_depth: float  # how much darker the lungs are than the body
    heart: tuple[float, float, float, float]  # offset from the lungs' centre, then axes
    ribs: tuple[float, float, float] | None  # frequency, phase, amplitude; None on CT
    ct: bool = False

    @classmethod
    def draw(cls, rng: np.random.Generator, *, ct: bool = False) -> Anatomy:
        """A random chest radiograph's anatomy, or an axial CT slice's with `ct`."""
        shift = _floats(rng.uniform(-JITTER, JITTER, size=2))
        background, body_level = float(rng.uniform(0.02, 0.12)), float(rng.uniform(0.55, 0.7))
        if ct:
            body_centre_y, body_axes, lung_dy = 0.5, (0.46, 0.36), 0.0
            lung_axes = _floats([rng.uniform(0.11, 0.14), rng.uniform(0.16, 0.2)])
        else:
            body_centre_y, body_axes = 0.55, (float(rng.uniform(0.4, 0.47)), 0.56)
            lung_axes = _floats([rng.uniform(0.09, 0.12), rng.uniform(0.21, 0.25)])
            lung_dy = float(rng.uniform(-0.02, 0.02))
        spread, lung_depth = float(rng.uniform(0.15, 0.19)), float(rng.uniform(0.3, 0.45))
        heart = _floats(rng.uniform([0.03, 0.08, 0.08, 0.1], [0.07, 0.12, 0.1, 0.14]))
        ribs = None if ct else _floats(rng.uniform([7.0, 0.0, 0.02], [9.0, 2 * np.pi, 0.05]))
        return cls(shift, background, body_level, body_centre_y, body_axes, lung_axes, lung_dy,
                   spread, lung_depth, heart, ribs, ct)  # fmt: skip

    def lung_centres(self, pose: tuple[float, float] = (0.0, 0.0)) -> list[tuple[float, float]]:
        """(x, y) of the left-hand and right-hand lung, moved by an image's `pose`."""
        x = 0.5 + self.shift[0] + pose[0]
        y = 0.5 + self.shift[1] + pose[1] + self.lung_dy
        return [(x - self.spread, y), (x + self.spread, y)]


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _patient_anatomy(seed: int, stream: int, patient: int) -> Anatomy:
    # Keyed by the patient, in streams apart from the images', so that every image of one patient
    # shows the same chest: what an image-level (not patient-grouped) split leaks.
    return Anatomy.draw(np.random.default_rng([seed, 100 + stream, patient]))


def render_chest(
    rng: np.random.Generator,
    width: int,
    height: int,
    *,
    anatomy: Anatomy | None = None,
    signal: float = 0.0,
    marker: float = 0.0,
    ct: bool = False,
    planted: list[dict] | None = None,
    findings: dict | None = None,
) -> np.ndarray:
    """Draw one chest-like 8-bit grayscale picture of `anatomy` (drawn from `rng` if None, a CT
    slice's if `ct`): dark lungs on a bright body, opacities in the lungs scaled by `signal`, an
    "R" marker in the top-left corner scaled by `marker`. `rng` draws what varies between images
    of one patient: pose, opacities, gain, noise, marker. When `planted` is a list, one
    ground-truth row per opacity and marker drawn is appended to it; when `findings` is a dict, it
    receives `lungs`, the two lung ellipses (cx, cy, ax, ay) in [0, 1] image coordinates, left-hand
    lung first, and `opacities`, (cx, cy, sigma, amplitude) of each opacity planted, its amplitude
    before the scaling by `signal` (listed at `signal` 0 too, where none shows). Neither changes a
    pixel or a random draw."""
    if anatomy is None:
        anatomy = Anatomy.draw(rng, ct=ct)
    elif anatomy.ct != ct:
        raise ValueError(f"ct={ct} but the anatomy given has ct={anatomy.ct}")
    # Geometry in [0, 1] coordinates so that every size shows the same anatomy; lungs stay inside
    # [BORDER, 1 - BORDER] for every jitter and pose (checked by the tests).
    xx, yy = np.meshgrid((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height)
    pose = _floats(rng.uniform(-POSE, POSE, size=2))
    image, lungs = _draw_anatomy(anatomy, pose, xx, yy)
    # Own streams for the opacities and the marker: with the same `rng`, images that differ in
    # `signal` or `marker` share everything else (anatomy, gain, noise).
    blob_rng = np.random.default_rng(rng.integers(2**63))
    marker_corner = rng.uniform(0.01, 0.025, size=2)
    centres = anatomy.lung_centres(pose)
    if findings is not None:
        findings["lungs"] = [(cx, cy, *anatomy.lung_axes) for cx, cy in centres]
    if signal > 0 or findings is not None:
        # blob_rng serves the opacities only: drawing them at signal 0 changes nothing else.
        blobs = _draw_opacities(blob_rng, centres, anatomy.lung_axes)
        if findings is not None:
            findings["opacities"] = [_floats(blob) for blob in blobs]
        if signal > 0:
            image = _add_opacities(image, lungs, blobs, signal, xx, yy, planted)
    # Per-image gain and offset dwarf what the local opacities add to the global mean and std.
    image = rng.uniform(-0.08, 0.08) + rng.uniform(0.8, 1.2) * image
    if marker > 0:
        # A bright label block with a dark "R" burnt in, as radiology departments stamp side
        # markers: large enough that a random-weight CNN can see it at 64 px.
        block = _block_mask(marker_corner, xx, yy)
        if planted is not None:
            x0, y0 = (float(v) for v in marker_corner)
            planted.append(_box_row("marker", x0, y0, x0 + MARKER_SIDE, y0 + MARKER_SIDE))
        image = image * (1.0 - marker * block) + marker * 0.95 * block
        glyph = _glyph_mask(marker_corner + 0.015, xx, yy)
        image = image * (1.0 - marker * glyph) + marker * 0.1 * glyph
    image += rng.normal(0.0, rng.uniform(0.01, 0.03), size=image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _draw_anatomy(
    anatomy: Anatomy, pose: tuple[float, float], xx: np.ndarray, yy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless picture in [0, 1] and the lungs' mask (where opacities may go)."""
    a = anatomy
    mid_x = 0.5 + a.shift[0] + pose[0]
    body_y = a.body_centre_y + a.shift[1] + pose[1]
    body = _soft_ellipse(xx, yy, mid_x, body_y, *a.body_axes, 0.03)
    centres = a.lung_centres(pose)
    lungs = sum(_soft_ellipse(xx, yy, cx, cy, *a.lung_axes) for cx, cy in centres)
    heart_dx, heart_dy, *heart_axes = a.heart
    heart = _soft_ellipse(xx, yy, mid_x + heart_dx, centres[0][1] + heart_dy, *heart_axes, 0.1)
    lungs = np.clip(lungs, 0.0, 1.0) * (1.0 - 0.7 * heart)
    image = a.background + (a.body_level - a.background) * body - a.lung_depth * lungs
    if a.ribs is not None:  # faint ribs give the lungs a texture of their own
        freq, phase, amplitude = a.ribs
        ribs = np.sin(2 * np.pi * freq * (yy + 0.4 * (xx - mid_x) ** 2) + phase)
        image += amplitude * ribs * lungs
    return image, lungs


def _box_row(kind: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"kind": kind, "x0": x0, "y0": y0, "x1": x1, "y1": y1,
            "cx": (x0 + x1) / 2, "cy": (y0 + y1) / 2, "sigma": None}  # fmt: skip


def _draw_opacities(
    rng: np.random.Generator, centres: list[tuple[float, float]], lung_axes: tuple[float, float]
) -> list[tuple]:
    """(cx, cy, sigma, amplitude) of 3-6 opacities, each centred inside one lung."""
    blobs = []
    for _ in range(int(rng.integers(3, 7))):
        cx, cy = centres[int(rng.integers(2))]
        angle, radius = rng.uniform(0, 2 * np.pi), 0.75 * np.sqrt(rng.random())
        bx = cx + radius * lung_axes[0] * np.cos(angle)
        by = cy + radius * lung_axes[1] * np.sin(angle)
        sigma = rng.uniform(0.03, 0.055)
        amplitude = rng.uniform(0.18, 0.3)
        blobs.append((bx, by, sigma, amplitude))
    return blobs


def _add_opacities(image, lungs, blobs, signal, xx, yy, planted=None) -> np.ndarray:
    """Add the bright blobs (`_draw_opacities`) inside the lungs, keeping the picture's mean and
    std."""
    added = np.zeros_like(image)
    for bx, by, sigma, amplitude in blobs:
        added += amplitude * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * sigma**2))
        if planted is not None:
            bx, by, sigma = float(bx), float(by), float(sigma)
            box = _box_row(
                "opacity", bx - 2 * sigma, by - 2 * sigma, bx + 2 * sigma, by + 2 * sigma
            )
            planted.append({**box, "sigma": sigma})
    added *= signal * lungs
    # Darken the lungs by what the opacities add, so the lungs' mean (hence the image's) stays
    # that of a healthy image: the signal is local texture, not a brightness shift.
    plain_std = image.std()
    image = image + added - lungs * added.sum() / (lungs * lungs).sum()
    # Same for the spread: rescale about the (unchanged) mean to the healthy image's std.
    return image.mean() + (image - image.mean()) * plain_std / image.std()


def _block_mask(corner: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """A square label of 9% of each side whose top-left corner is `corner` (inside the 12.5%
    border strip, never on the lungs)."""
    x0, y0 = corner
    inside = (xx >= x0) & (xx < x0 + MARKER_SIDE) & (yy >= y0) & (yy < y0 + MARKER_SIDE)
    return inside.astype(np.float64)


def _glyph_mask(corner: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """The "R" glyph, nearest-neighbour scaled into the top-left 10% corner."""
    x0, y0 = corner
    size_x, size_y = 0.06, 0.075
    col = np.floor((xx - x0) / size_x * _R_GLYPH.shape[1]).astype(int)
    row = np.floor((yy - y0) / size_y * _R_GLYPH.shape[0]).astype(int)
    inside = (col >= 0) & (col < _R_GLYPH.shape[1]) & (row >= 0) & (row < _R_GLYPH.shape[0])
    mask = np.zeros_like(xx)
    mask[inside] = _R_GLYPH[row[inside], col[inside]]
    return mask


def _draw_arrow(
    pixels: np.ndarray,
    anatomy: Anatomy,
    rng: np.random.Generator,
    planted: list[dict] | None = None,
) -> np.ndarray:
    """The picture in RGB with a red arrow 8-12% of its width long, its tip on one lung, coming
    from above and from the midline so that it stays inside the thorax (its box appended to
    `planted` when given)."""
    height, width = pixels.shape
    side = int(rng.integers(2))  # 0: the lung on the picture's left
    cx, cy = anatomy.lung_centres()[side]
    ax, ay = anatomy.lung_axes
    tip = np.array([cx + rng.uniform(-0.3, 0.3) * ax, cy + rng.uniform(-0.4, 0.4) * ay])
    tip *= (width, height)
    length = rng.uniform(0.08, 0.12) * width
    angle = rng.uniform(np.pi / 6, np.pi / 3)
    back = np.array([np.cos(angle) * (1 - 2 * side), -np.sin(angle)])  # unit vector tip to tail
    head = 0.45 * length
    base = tip + head * back
    across = 0.6 * head * np.array([-back[1], back[0]])
    img = Image.fromarray(np.stack([pixels] * 3, axis=-1))
    draw = ImageDraw.Draw(img)
    # Thick enough that JPEG's halved colour resolution leaves it clearly red.
    shaft = max(3, round(0.025 * width))
    draw.line([tuple(base), tuple(tip + length * back)], fill=ARROW_RGB, width=shaft)
    draw.polygon([tuple(tip), tuple(base + across), tuple(base - across)], fill=ARROW_RGB)
    if planted is not None:
        corners = np.array([tip, tip + length * back, base + across, base - across])
        (x0, y0), (x1, y1) = corners.min(axis=0) - shaft / 2, corners.max(axis=0) + shaft / 2
        planted.append(_box_row("arrow", x0 / width, y0 / height, x1 / width, y1 / height))
    return np.asarray(img)


def _encode(pixels: np.ndarray, style: _Style) -> bytes:
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


def _image_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # One stream per image: an image's pixels do not depend on how many images came before it.
    return np.random.default_rng([seed, stream, index])


def _check_args(
    out_dir: Path, seed: int, n_disease: int, n_healthy: int, n_external: int, size: int,
    confound: float, signal: float, marks: float, n_later: int = 0,
) -> None:  # fmt: skip
    if seed < 0:
        raise ConfigError(f"seed={seed}: must be >= 0")
    if n_disease < 10:
        raise ConfigError(f"n_disease_patients={n_disease}: need at least 10 to plant the faults")
    if n_healthy < 6 or n_external < 1:
        raise ConfigError(
            f"n_healthy_patients={n_healthy}, n_external_patients={n_external}: "
            "need at least 6 healthy and 1 external patient"
        )
    if size < 32:
        raise ConfigError(f"image_size={size}: use at least 32 pixels")
    if not 0.0 <= confound <= 1.0:
        raise ConfigError(f"confound={confound}: must lie in [0, 1]")
    if signal < 0:
        raise ConfigError(f"signal={signal}: must be >= 0")
    if not 0.0 <= marks <= 1.0:
        raise ConfigError(f"marks={marks}: must lie in [0, 1] (a fraction of COVID-19 X-rays)")
    if n_later < 0:
        raise ConfigError(f"n_later_patients={n_later}: must be >= 0 (0 = no later snapshot)")
    for name in (DISEASE_DIR, HEALTHY_DIR, EXTERNAL_DIR, LATER_DIR):
        target = out_dir / name
        if target.exists() and any(target.iterdir()):
            raise DataError(
                f"{target} exists and is not empty: remove it or choose another out_dir"
            )


def _hex_name(rng: np.random.Generator) -> str:
    """A GUID-like name, as many web images in the real collection have."""
    return "-".join("".join(rng.choice(list("0123456789ABCDEF"), size=n)) for n in (8, 4, 4, 4, 12))


def _disease_plan(rng: np.random.Generator, n_patients: int, image_size: int) -> list[dict]:
    """Metadata rows (dicts keyed by column) of the disease source; '_'-prefixed keys say how to
    draw and name each image."""
    patients = [("COVID-19", int(rng.integers(1, 4))) for _ in range(n_patients)]
    patients += _OTHER_FINDINGS
    order = rng.permutation(len(patients))
    rows: list[dict] = []
    for pid, index in enumerate(order, start=1):
        finding, n_images = patients[index]
        sex = str(rng.choice(["M", "M", "F", "F", ""]))
        age = "" if rng.random() < 0.1 else str(int(rng.integers(25, 86)))
        survival = str(rng.choice(["Y", "Y", "N", ""]))
        location = str(rng.choice(_LOCATIONS))
        doi = "" if rng.random() < 0.3 else f"10.5555/synthetic.{pid:03d}"
        url = f"https://example.org/synthetic/case-{pid}"
        license_ = str(rng.choice(_LICENSES))
        offsets = np.sort(rng.choice(np.arange(0, 15), size=n_images, replace=False))
        for k in range(n_images):
            row = {
                "Patientid": str(pid), "offset": str(int(offsets[k])), "sex": sex, "age": age,
                "finding": finding, "survival": survival, "view": "PA", "modality": "X-ray",
                "date": "2020", "location": location, "filename": "", "doi": doi, " url": url,
                "license": license_, "clinical notes": str(rng.choice(_NOTES)),
                "other notes": "", "": "", "_k": k, "_ct": False,
            }  # fmt: skip
            if finding == "COVID-19":
                views = ["PA"] * 6 + ["AP", "AP", "AP Supine"] + (["L"] if k else [])
                row["view"] = str(rng.choice(views))
                row["date"] = str(rng.choice(_DATES))
                letter = "abc"[k]
                style = int(rng.integers(4))
                if style == 0:
                    stem = f"covid-19-pneumonia-{pid}-{letter}"
                elif style == 1:
                    stem = f"nejmc20{pid:05d}_f1{letter}"
                elif style == 2:
                    stem = _hex_name(rng)
                else:
                    stem = f"lancet-case{pid}{letter}"
            else:
                row["date"] = "2004" if finding == "SARS" else "2017"
                row["survival"] = ""
                stem = f"{finding}-synthetic-{pid}-Fig{k + 1}-day{int(offsets[k])}"
            row["_stem"] = stem
            row["_style"] = _shared_style(rng, image_size)
            if n_images == 1 and rng.random() < 0.3:
                row["offset"] = ""
            rows.append(row)
    # A few CT slices attached to COVID-19 patients: a modality curation must exclude.
    covid_first = [r for r in rows if r["finding"] == "COVID-19" and r["_k"] == 0]
    for i, source in enumerate(covid_first[-3:]):
        ct_row = dict(source, view="Axial", modality="CT", _ct=True, _k=9)
        ct_row["_stem"] = f"synthetic-ct-{source['Patientid']}-g00{i + 1}-l"
        ct_row["_style"] = _shared_style(rng, image_size)
        ct_row["clinical notes"] = "Ground-glass opacities in both lower lobes on CT"
        rows.insert(rows.index(source) + 1, ct_row)
    return rows


def _plant_disease_faults(rng: np.random.Generator, rows: list[dict]) -> None:
    """Mark the planted faults on COVID-19 PA X-ray rows of six different patients."""
    firsts = [r for r in rows if r["finding"] == "COVID-19" and r["_k"] == 0]
    chosen = [firsts[i] for i in rng.choice(len(firsts), size=10, replace=False)]
    missing, corrupt, dup_source, dup_owner, script, spaced = chosen[:6]
    for row in chosen[:6]:
        row["view"] = "PA"
    missing["_fault"] = "missing"
    missing["_stem"] = f"covid-19-pneumonia-{missing['Patientid']}-PA"
    corrupt["_fault"] = "corrupt"
    script["clinical notes"] = f"Bilateral opacities, see report. {SCRIPT_NOTE}"
    spaced["_stem"] = f"covid pneumonia case {spaced['Patientid']}"
    # The same picture published again under another patient id (the nasty real-world case).
    copy = dict(dup_owner, offset="", _k=8, _fault="duplicate")
    copy["view"] = "PA"
    copy["_stem"] = _hex_name(rng)
    copy["_style"] = dup_source["_style"]
    copy["_duplicate_of"] = dup_source
    rows.insert(rows.index(dup_owner) + 1, copy)
    # Unusual modes that the image loader must handle; forced to PNG, which alone can hold them.
    for row, mode in zip(chosen[6:9], ["RGBA", "I;16", "P"], strict=True):
        style = row["_style"]
        row["_style"] = _Style(style.width, style.height, "PNG", mode, style.quality, 0.0)


def _choose_marks(rows: list[dict], seed: int, fraction: float) -> None:
    """Flag `fraction` of the COVID-19 X-ray rows free of planted faults for a red arrow; their
    images turn RGB."""
    copied = {id(r["_duplicate_of"]) for r in rows if "_duplicate_of" in r}
    eligible = [
        r for r in rows
        if r["finding"] == "COVID-19" and not r["_ct"] and "_fault" not in r
        and id(r) not in copied and r["_style"].mode in ("L", "RGB")
    ]  # fmt: skip
    # A stream of its own, so that marking changes no other image; a permutation, so that a
    # larger fraction marks a superset.
    order = np.random.default_rng([seed, 5]).permutation(len(eligible))
    for index in order[: round(fraction * len(eligible))]:
        row = eligible[index]
        row["_mark"] = True
        row["_style"] = replace(row["_style"], mode="RGB")


def _extension(style: _Style, rng: np.random.Generator) -> str:
    return ".png" if style.fmt == "PNG" else str(rng.choice([".jpeg", ".jpg"]))


def _write_disease(
    root: Path,
    rows: list[dict],
    seed: int,
    signal: float,
    truth: list[dict],
    drawn: list[dict] | None = None,
) -> dict:
    """Write images/ and metadata.csv; return the planted faults by file name. Appends to
    `truth` what each written file has planted in it, and to `drawn` its lungs and opacities
    (`_drawn`)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    name_rng = np.random.default_rng([seed, 99])
    faults: dict = {}
    written: dict[int, bytes] = {}
    planted_in: dict[int, list[dict]] = {}
    findings_in: dict[int, dict] = {}
    # Copies last, so that the picture they copy has been drawn.
    order = sorted(range(len(rows)), key=lambda i: rows[i].get("_fault") == "duplicate")
    for index in order:
        row = rows[index]
        style = row["_style"]
        row["filename"] = row["_stem"] + _extension(style, name_rng)
        fault = row.get("_fault")
        if fault == "missing":
            faults["missing_file"] = row["filename"]
            continue
        if fault == "duplicate":
            source = row["_duplicate_of"]
            row["filename"] = row["_stem"] + Path(source["filename"]).suffix
            data = written[id(source)]
            planted = planted_in[id(source)]
            findings = findings_in[id(source)]
            faults["duplicate_pair"] = [source["filename"], row["filename"]]
        else:
            planted, findings = [], {}
            data = _encode(_render_disease(row, index, seed, signal, planted, findings), style)
            written[id(row)] = data
            planted_in[id(row)] = planted
            findings_in[id(row)] = findings
        if fault == "corrupt":
            data = data[: len(data) // 2]  # truncated download: header decodes, pixels do not
            faults["corrupt_file"] = row["filename"]
        if SCRIPT_NOTE in row["clinical notes"]:
            faults["script_note_file"] = row["filename"]
        if " " in row["filename"]:
            faults["space_in_name_file"] = row["filename"]
        if style.mode in ("RGBA", "I;16", "P"):
            faults.setdefault("unusual_modes", {})[style.mode] = row["filename"]
        (images / row["filename"]).write_bytes(data)
        file = f"images/{row['filename']}"
        truth.extend({"source_dir": root.name, "file": file, **item} for item in planted)
        if drawn is not None:
            drawn.append(_drawn(root.name, row["filename"], style, findings, row, fault or ""))
    names = [r["filename"] for r in rows]
    if len(set(names)) != len(names):
        raise AssertionError("synthetic disease file names collide")  # a bug here, not user data
    with atomic_open(root / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in METADATA_COLUMNS])
    return faults


def _render_disease(
    row: dict,
    index: int,
    seed: int,
    signal: float,
    planted: list[dict] | None = None,
    findings: dict | None = None,
) -> np.ndarray:
    """One disease image of the row's patient (a CT slice keeps a look of its own), with a red
    arrow if the row is marked (`planted`, `findings`: as `render_chest`)."""
    style = row["_style"]
    anatomy = None if row["_ct"] else _patient_anatomy(seed, 1, int(row["Patientid"]))
    pixels = render_chest(
        _image_rng(seed, 1, index), style.width, style.height,
        anatomy=anatomy, signal=signal, marker=style.marker, ct=row["_ct"], planted=planted,
        findings=findings,
    )  # fmt: skip
    if row.get("_mark"):
        pixels = _draw_arrow(pixels, anatomy, _image_rng(seed, 6, index), planted)
    return pixels


def _healthy_plan(rng: np.random.Generator, n_patients: int) -> list[tuple[str, str]]:
    """(patient key, file name) pairs in Kermany's naming, including its odd forms."""
    numbers = np.sort(rng.choice(np.arange(1, 1500), size=n_patients, replace=False))
    files: list[tuple[str, str]] = []
    for i, number in enumerate(numbers):
        key = f"IM-{number:04d}"
        prefix = "NORMAL2-" if number > 380 and rng.random() < 0.5 else ""
        if i == 1:  # one patient under both prefixes, as IM-0539 in the real set
            files += [(key, f"{key}-0001.jpeg"), (key, f"NORMAL2-{key}-0001.jpeg")]
        elif i == 2:
            files.append((key, f"{prefix}{key}-0001-0001.jpeg"))
        elif rng.random() < 0.25:
            files += [(key, f"{prefix}{key}-0001.jpeg"), (key, f"{prefix}{key}-0002.jpeg")]
        else:
            files.append((key, f"{prefix}{key}-0001.jpeg"))
    return files


def _write_healthy(
    root: Path,
    files: list[tuple[str, str]],
    seed: int,
    image_size: int,
    confound: float,
    truth: list[dict],
) -> tuple[dict, int]:
    """Write the Kermany-style images; each is in the confounded style with chance `confound`.
    Returns the planted faults and how many images carry the confound; appends each file's
    marker to `truth`."""
    root.mkdir(parents=True, exist_ok=True)
    style_rng = np.random.default_rng([seed, 2])
    confounded = style_rng.random(len(files)) < confound
    styles = [
        _kermany_style(style_rng, image_size, confound)
        if flag
        else _shared_style(style_rng, image_size)
        for flag in confounded
    ]
    # Unconfounded images get the disease source's unusual modes too, so modes never separate.
    plain = np.flatnonzero(~confounded)
    modes: dict[str, str] = {}
    picks = style_rng.choice(plain, size=min(3, len(plain)), replace=False)
    for index, mode in zip(picks, ["RGBA", "I;16", "P"], strict=False):
        old = styles[index]
        styles[index] = _Style(old.width, old.height, "PNG", mode, old.quality, 0.0)
        modes[mode] = files[index][1]
    for index, ((key, name), style) in enumerate(zip(files, styles, strict=True)):
        anatomy = _patient_anatomy(seed, 2, int(key.removeprefix("IM-")))
        rng = _image_rng(seed, 2, index)
        planted: list[dict] = []
        pixels = render_chest(
            rng, style.width, style.height, anatomy=anatomy, marker=style.marker, planted=planted
        )
        (root / name).write_bytes(_encode(pixels, style))
        truth.extend({"source_dir": root.name, "file": name, **item} for item in planted)
    # A byte-identical copy saved under another name, as `IM-0019-0001 (1).jpeg` in the real set.
    original = next(name for _key, name in files if re.fullmatch(r"IM-\d{4}-0001\.jpeg", name))
    copy = original.removesuffix(".jpeg") + " (1).jpeg"
    (root / copy).write_bytes((root / original).read_bytes())
    truth.extend(
        [
            {**r, "file": copy}
            for r in truth
            if (r["source_dir"], r["file"]) == (root.name, original)
        ]
    )
    result: dict = {"duplicate_pair": [original, copy]}
    if modes:
        result["unusual_modes"] = modes
    return result, int(confounded.sum())


def write_ground_truth(path: Path, truth: list[dict]) -> None:
    """The planted opacities, markers and arrows, one row each, coordinates to 6 decimals."""
    import pandas as pd

    from cxr.io import write_csv

    frame = pd.DataFrame(truth, columns=GROUND_TRUTH_COLUMNS)
    coordinates = GROUND_TRUTH_COLUMNS[3:]
    frame[coordinates] = frame[coordinates].astype(float).round(6)
    write_csv(path, frame)


def _external_plan(rng: np.random.Generator, n_patients: int) -> list[tuple[str, str]]:
    """(patient id, file name) pairs in NIH's PPPPPPPP_FFF.png naming."""
    ids = np.sort(rng.choice(np.arange(1000, 30000), size=n_patients, replace=False))
    files = []
    for pid in ids:
        n_files = int(rng.choice([1, 1, 2, 2, 3]))
        for follow_up in np.sort(rng.choice(np.arange(0, 25), size=n_files, replace=False)):
            files.append((f"{pid:08d}", f"{pid:08d}_{follow_up:03d}.png"))
    return files


def generate_synthetic(
    out_dir: Path,
    *,
    seed: int,
    n_disease_patients: int = 30,
    n_healthy_patients: int = 45,
    n_external_patients: int = 12,
    image_size: int = 128,
    confound: float = 1.0,
    signal: float = 1.0,
    marks: float = 0.15,
    n_later_patients: int = 0,
) -> dict:
    """Write the three synthetic sources under `out_dir`, and with `n_later_patients` a later
    snapshot of the disease source (`write_later_snapshot`), the collection's annotations/ in the
    latest snapshot (`write_annotations`); return a JSON-safe summary of counts and planted faults.
    Same arguments give byte-identical files."""
    out_dir = Path(out_dir)
    _check_args(
        out_dir, seed, n_disease_patients, n_healthy_patients, n_external_patients, image_size,
        confound, signal, marks, n_later_patients,
    )  # fmt: skip
    plan_rng = np.random.default_rng([seed, 0])

    rows = _disease_plan(plan_rng, n_disease_patients, image_size)
    _plant_disease_faults(plan_rng, rows)
    _choose_marks(rows, seed, marks)
    truth: list[dict] = []
    drawn: list[dict] = []
    disease_faults = _write_disease(out_dir / DISEASE_DIR, rows, seed, signal, truth, drawn)

    healthy_files = _healthy_plan(plan_rng, n_healthy_patients)
    healthy_faults, n_confounded = _write_healthy(
        out_dir / HEALTHY_DIR, healthy_files, seed, image_size, confound, truth
    )

    external_files = _external_plan(plan_rng, n_external_patients)
    external = out_dir / EXTERNAL_DIR
    external.mkdir(parents=True, exist_ok=True)
    for index, (pid, name) in enumerate(external_files):
        style = _shared_style(_image_rng(seed, 4, index), image_size)
        # NIH ships 8-bit grayscale PNG; size follows the disease source, no marker, no signal.
        style = _Style(style.width, style.height, "PNG", "L", style.quality, 0.0)
        anatomy = _patient_anatomy(seed, 3, int(pid))
        pixels = render_chest(
            _image_rng(seed, 3, index), style.width, style.height, anatomy=anatomy
        )
        (external / name).write_bytes(_encode(pixels, style))

    later = None
    if n_later_patients:
        later = write_later_snapshot(
            out_dir / LATER_DIR, out_dir / DISEASE_DIR, rows,
            seed=seed, n_patients=n_later_patients, image_size=image_size, signal=signal,
            truth=truth, drawn=drawn,
        )  # fmt: skip
    write_ground_truth(out_dir / GROUND_TRUTH_FILE, truth)
    # The collection's annotations came with its later snapshots and cover the earlier files too.
    annotated = LATER_DIR if n_later_patients else DISEASE_DIR
    annotations = write_annotations(
        out_dir / annotated, [d for d in drawn if d["source_dir"] == annotated], seed=seed
    )

    def counts(values) -> dict[str, int]:
        keys, n = np.unique(np.asarray(values, dtype=str), return_counts=True)
        return {str(k): int(c) for k, c in zip(keys, n, strict=True)}

    return {
        "parameters": {
            "seed": int(seed),
            "n_disease_patients": int(n_disease_patients),
            "n_healthy_patients": int(n_healthy_patients),
            "n_external_patients": int(n_external_patients),
            "image_size": int(image_size),
            "confound": float(confound),
            "signal": float(signal),
            "marks": float(marks),
            "n_later_patients": int(n_later_patients),
        },
        "disease": {
            "dir": DISEASE_DIR,
            "rows": len(rows),
            "files": len(rows) - 1,
            "patients": len({r["Patientid"] for r in rows}),
            "rows_by_finding": counts([r["finding"] for r in rows]),
            "rows_by_view": counts([r["view"] for r in rows]),
            "rows_by_modality": counts([r["modality"] for r in rows]),
            "faults": disease_faults,
            "coloured_marks": sorted(r["filename"] for r in rows if r.get("_mark")),
        },
        "healthy": {
            "dir": HEALTHY_DIR,
            "files": len(healthy_files) + 1,
            "patients": len({key for key, _ in healthy_files}),
            "confounded_files": n_confounded,
            "faults": healthy_faults,
        },
        "external": {
            "dir": EXTERNAL_DIR,
            "files": len(external_files),
            "patients": len({pid for pid, _ in external_files}),
        },
        "later": later,
        "annotations": annotations,
    }


# Column names of the collection from mid-2020 on (e.g. upstream 584034a, 2020-06-22): lower-case
# `patientid`, `folder`, `modality`, `clinical_notes`, hierarchical findings.
LATER_COLUMNS = [
    "patientid", "offset", "sex", "age", "finding", "RT_PCR_positive", "survival", "view",
    "modality", "date", "location", "folder", "filename", "doi", "url", "license",
    "clinical_notes", "other_notes",
]  # fmt: skip
_LATER_FINDINGS = {
    "COVID-19": "Pneumonia/Viral/COVID-19",
    "SARS": "Pneumonia/Viral/SARS",
    "Streptococcus": "Pneumonia/Bacterial/Streptococcus",
}
_LATER_LOCATION = "Hospital Universitario, Madrid, Spain"  # the new contributor's images


def _later_row(row: dict) -> dict:
    """A row of the first snapshot as the later metadata.csv writes it."""
    return {
        "patientid": row["Patientid"], "offset": row["offset"], "sex": row["sex"],
        "age": row["age"], "finding": _LATER_FINDINGS.get(row["finding"], row["finding"]),
        "RT_PCR_positive": "Y" if row["finding"] == "COVID-19" else "", "survival": row["survival"],
        "view": row["view"], "modality": row["modality"], "date": row["date"],
        "location": row["location"], "folder": "images", "filename": row["filename"],
        "doi": row["doi"], "url": row[" url"], "license": row["license"],
        "clinical_notes": row["clinical notes"], "other_notes": row["other notes"],
    }  # fmt: skip


def _new_hospital_style(rng: np.random.Generator, image_size: int) -> _Style:
    """The new contributor's images: 8-bit grayscale PNG near the disease source's size, no
    marker. Nothing in the file separates them from the healthy sources more than from the
    first snapshot's disease images: no source confound of their own."""
    width = round(image_size * rng.uniform(0.9, 1.1))
    return _Style(width, round(width * rng.uniform(0.95, 1.1)), "PNG", "L", 90, 0.0)


def write_later_snapshot(
    root: Path,
    first_root: Path,
    first_rows: list[dict],
    *,
    seed: int,
    n_patients: int,
    image_size: int,
    signal: float,
    truth: list[dict] | None = None,
    drawn: list[dict] | None = None,
) -> dict:
    """A later snapshot of the disease source, as the collection grew after March 2020: every
    row and file of the first snapshot (`first_rows`, the files under `first_root`) in the
    later column layout, plus
    - `n_patients` new COVID-19 patients from a new hospital, 1-3 PA images each;
    - follow-up PA images of 3 patients of the first snapshot (same patient id, same chest): an
      external test must exclude them as patients seen in training;
    - 2 byte-identical re-uploads of first-snapshot COVID-19 PA images under new names and new
      patient ids, which only the pixels reveal;
    - 2 new non-COVID rows (hierarchical findings) that the curation rules exclude.
    Streams of its own: the first snapshot's files do not change. What each file has planted
    in it is appended to `truth` (ground-truth rows), and its lungs and opacities to `drawn`
    (`_drawn`; a copy, re-uploads included, takes those recorded when its picture was first drawn),
    as for the first snapshot. Returns a summary."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    truth = [] if truth is None else truth
    planted_in: dict[str, list[dict]] = {}
    for row in truth:
        if row["source_dir"] == first_root.name:
            planted_in.setdefault(row["file"], []).append(row)

    def copy_truth(original: str, name: str) -> None:
        for row in planted_in.get(original, []):
            truth.append({**row, "source_dir": LATER_DIR, "file": name})

    drawn = [] if drawn is None else drawn
    drawn_in = {d["file_name"]: d for d in drawn if d["source_dir"] == first_root.name}

    def copy_drawn(original: str, name: str, row: dict | None = None) -> None:
        if original in drawn_in:
            entry = {**drawn_in[original], "source_dir": LATER_DIR, "file_name": name}
            drawn.append(entry if row is None else {**entry, "metadata": _image_metadata(row)})

    rng = np.random.default_rng([seed, 7])
    rows = [_later_row(row) for row in first_rows]
    for row in first_rows:  # the files as they are, including the planted faults
        source = first_root / "images" / row["filename"]
        if source.is_file():
            (images / row["filename"]).write_bytes(source.read_bytes())
            copy_truth(f"images/{row['filename']}", f"images/{row['filename']}")
            copy_drawn(row["filename"], row["filename"])
    usable = [
        r for r in first_rows
        if r["finding"] == "COVID-19" and r["view"] == "PA" and r["modality"] == "X-ray"
        and "_fault" not in r and (first_root / "images" / r["filename"]).is_file()
    ]  # fmt: skip
    first_pid = 1 + max(int(r["Patientid"]) for r in first_rows)
    summary: dict = {"dir": LATER_DIR, "copied_rows": len(rows), "new_patients": [],
                     "follow_ups": [], "reuploads": {}, "excluded_by_rules": []}  # fmt: skip
    index = 0

    def add(patient: str, anatomy: Anatomy, *, finding: str, stem: str, view: str = "PA") -> str:
        nonlocal index
        style = _new_hospital_style(_image_rng(seed, 8, index), image_size)
        covid = finding.endswith("COVID-19")
        name = f"{stem}.png"
        planted: list[dict] = []
        findings: dict = {}
        pixels = render_chest(
            _image_rng(seed, 9, index), style.width, style.height,
            anatomy=anatomy, signal=signal if covid else 0.5 * signal, planted=planted,
            findings=findings,
        )  # fmt: skip
        truth.extend({"source_dir": LATER_DIR, "file": f"images/{name}", **b} for b in planted)
        (images / name).write_bytes(_encode(pixels, style))
        rows.append(_new_row(rng, patient, finding, view, name, index))
        drawn.append(_drawn(LATER_DIR, name, style, findings, rows[-1]))
        index += 1
        return name

    for k in range(n_patients):
        pid = first_pid + k
        anatomy = Anatomy.draw(np.random.default_rng([seed, 107, pid]))
        for j in range(int(rng.integers(1, 4))):
            add(str(pid), anatomy, finding="Pneumonia/Viral/COVID-19",
                stem=f"covid-19-madrid-{pid}-{'abc'[j]}")  # fmt: skip
        summary["new_patients"].append(str(pid))
    followed = {r["Patientid"]: r for r in usable}
    for pid in sorted(followed, key=int)[:3]:
        anatomy = _patient_anatomy(seed, 1, int(pid))
        name = add(pid, anatomy, finding="Pneumonia/Viral/COVID-19",
                   stem=f"covid-19-follow-up-{pid}-day20")  # fmt: skip
        summary["follow_ups"].append(name)
    for k, original in enumerate(usable[-2:]):
        pid = str(first_pid + n_patients + k)
        name = f"{_hex_name(rng)}{Path(original['filename']).suffix}"
        (images / name).write_bytes((first_root / "images" / original["filename"]).read_bytes())
        copy_truth(f"images/{original['filename']}", f"images/{name}")
        rows.append(_new_row(rng, pid, "Pneumonia/Viral/COVID-19", "PA", name, index))
        copy_drawn(original["filename"], name, rows[-1])  # same picture, another patient id
        summary["reuploads"][name] = original["filename"]
    other = first_pid + n_patients + 2
    for finding, view in (("Pneumonia/Bacterial/Streptococcus", "PA"), ("No Finding", "PA")):
        anatomy = Anatomy.draw(np.random.default_rng([seed, 107, other]))
        name = add(str(other), anatomy, finding=finding, stem=f"other-{other}", view=view)
        summary["excluded_by_rules"].append(name)
        other += 1
    with atomic_open(root / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LATER_COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in LATER_COLUMNS])
    summary["rows"] = len(rows)
    return summary


def _new_row(
    rng: np.random.Generator, patient: str, finding: str, view: str, name: str, index: int
) -> dict:
    return {
        "patientid": patient, "offset": str(int(rng.integers(0, 20))),
        "sex": str(rng.choice(["M", "F"])), "age": str(int(rng.integers(30, 90))),
        "finding": finding, "RT_PCR_positive": "Y" if finding.endswith("COVID-19") else "",
        "survival": "", "view": view, "modality": "X-ray", "date": "2020-05",
        "location": _LATER_LOCATION, "folder": "images", "filename": name,
        "doi": "", "url": f"https://example.org/synthetic/later-{index}", "license": "CC BY",
        "clinical_notes": "", "other_notes": "",
    }  # fmt: skip


# The annotations/ folder of the collection's later snapshots: lung boxes (COCO), lung masks and
# severity scores. Each covers its own share of the COVID-19 PA X-rays, as in the real folder.
# Severity covers nearly every image (the real file about 90): the severity controls of the
# tests need as many scored images as the small test split has.
_BOXES_SHARE, _MASKS_SHARE, _SEVERITY_SHARE = 0.8, 0.7, 0.95
_BOXES_HEAD = {
    "info": {"description": "synthetic lung bounding boxes (seeded): the lung ellipses drawn",
             "url": "", "creator": "cxr.synthetic", "date_created": "04/02/2020"},
    "licenses": [{"url": "https://creativecommons.org/licenses/by/4.0/", "id": 1,
                  "name": "Attribution License"}],
    # Category 1 is the patient's right lung: on the image's left, as radiographs are shown.
    "categories": [{"supercategory": "Lungs", "id": 1, "name": "Right Lung"},
                   {"supercategory": "Lungs", "id": 2, "name": "Left Lung"}],
}  # fmt: skip
SEVERITY_COLUMNS = ["filename", "geographic_mean", "opacity_mean"]
# The real file's comment lines, padded with commas to the header's three fields (no comma
# inside: a reader that does not skip them sees three fields).
_SEVERITY_COMMENTS = [
    "## Synthetic severity scores (seeded): computed from the opacities drawn; not rated",
    "## License: CC BY 4.0",
    "## Citation: synthetic data of cxr.synthetic (severity_scores)",
    "## geographic_extent_mean: extent of lung involvement by the opacities; both lungs; 0 to 8.",
    "## opacity_mean: degree of opacity; both lungs; 0 to 6.",
]
# Severity is measured against a fixed lung area, not each lung's own: the scores then depend on
# the opacities drawn alone, never on the anatomy a model also sees (at `signal: 0` they are
# independent of every pixel: the negative control). About the mean X-ray lung ellipse's area
# (pi x 0.105 x 0.23 in [0, 1] image coordinates).
REFERENCE_LUNG_AREA = 0.076
# The density (integrated opacity over the reference area, amplitudes before `signal`) that
# scores the full 3 of a lung; the densest lungs drawn reach about this.
OPACITY_FULL = 0.3
_NOT_A_NUMBER = "3-4"  # a rater's range where a number belongs: the planted non-numeric value


def _image_metadata(row: dict) -> dict:
    """The metadata an annotation file's images[] carries, from a row of either metadata layout;
    findings as the collection named them in April 2020 ('COVID-19', not hierarchical)."""
    patient = row["Patientid"] if "Patientid" in row else row["patientid"]
    return {"patientid": patient, "offset": row["offset"], "sex": row["sex"], "age": row["age"],
            "finding": row["finding"].rsplit("/", 1)[-1], "view": row["view"],
            "modality": row["modality"]}  # fmt: skip


def _drawn(
    source_dir: str, name: str, style: _Style, findings: dict, row: dict, fault: str = ""
) -> dict:
    """What one written file shows, for its annotations: `write_annotations`' `drawn` entry."""
    return {"source_dir": source_dir, "file_name": name, "width": style.width,
            "height": style.height, "metadata": _image_metadata(row), "fault": fault,
            "lungs": findings["lungs"], "opacities": findings["opacities"]}  # fmt: skip


def severity_scores(
    lungs: list[tuple[float, ...]], opacities: list[tuple[float, ...]]
) -> tuple[float, float]:
    """(geographic_mean, opacity_mean) of what was drawn, on the raters' scales. Each opacity
    (cx, cy, sigma, amplitude) belongs to the lung (cx, cy, ax, ay) whose ellipse holds its centre
    deepest. An opacity is a Gaussian: its effective area is 2 pi sigma^2, its integrated
    intensity amplitude x 2 pi sigma^2. Per lung, geographic extent = 4 x min(1, the summed areas
    / REFERENCE_LUNG_AREA); opacity = 3 x min(1, the summed intensities / REFERENCE_LUNG_AREA /
    OPACITY_FULL). Both are summed over the two lungs (0-8, 0-6) and rounded to 1 decimal.
    Amplitudes are those before `signal`: the severity planted, which varies at signal 0 too
    (the negative control: scores, no pixels); so does the score of what a model can see, the
    opacities' total intensity, at signal > 0."""
    depth = np.array([[((bx - cx) / ax) ** 2 + ((by - cy) / ay) ** 2 for cx, cy, ax, ay in lungs]
                      for bx, by, *_ in opacities]).reshape(len(opacities), len(lungs))  # fmt: skip
    owner = depth.argmin(axis=1) if len(opacities) else np.zeros(0, dtype=int)
    geographic = opacity = 0.0
    for k in range(len(lungs)):
        mine = [blob for blob, lung in zip(opacities, owner, strict=True) if lung == k]
        area = sum(2 * np.pi * sigma**2 for _, _, sigma, _ in mine)
        intensity = sum(amplitude * 2 * np.pi * sigma**2 for _, _, sigma, amplitude in mine)
        geographic += 4.0 * min(1.0, area / REFERENCE_LUNG_AREA)
        opacity += 3.0 * min(1.0, intensity / REFERENCE_LUNG_AREA / OPACITY_FULL)
    return round(float(geographic), 1), round(float(opacity), 1)


def lung_box(lung: tuple[float, ...], width: int, height: int) -> list[int]:
    """[x, y, width, height] in pixels: the smallest whole-pixel box around the lung ellipse
    (cx, cy, ax, ay in [0, 1] image coordinates), clipped to the image."""
    cx, cy, ax, ay = lung
    x0, x1 = max(0, int(np.floor((cx - ax) * width))), min(width, int(np.ceil((cx + ax) * width)))
    y0 = max(0, int(np.floor((cy - ay) * height)))
    y1 = min(height, int(np.ceil((cy + ay) * height)))
    return [x0, y0, x1 - x0, y1 - y0]


def lung_mask(lungs: list[tuple[float, ...]], width: int, height: int) -> np.ndarray:
    """The lung ellipses as an 8-bit picture, 255 inside (pixel centres, as `render_chest`)."""
    x = (np.arange(width) + 0.5) / width
    y = (np.arange(height) + 0.5) / height
    inside = np.zeros((height, width), dtype=bool)
    for cx, cy, ax, ay in lungs:
        inside |= ((x[None, :] - cx) / ax) ** 2 + ((y[:, None] - cy) / ay) ** 2 <= 1.0
    return np.where(inside, 255, 0).astype(np.uint8)


def _annotatable(root: Path, entry: dict) -> bool:
    """A COVID-19 PA X-ray free of planted faults whose file is under `root`/images."""
    meta = entry["metadata"]
    return (
        (meta["finding"], meta["view"], meta["modality"]) == ("COVID-19", "PA", "X-ray")
        and not entry["fault"]
        and (root / "images" / entry["file_name"]).is_file()
    )


def write_annotations(root: Path, drawn: list[dict], *, seed: int) -> dict:
    """Write the collection's annotations/ folder under `root` for the COVID-19 PA X-rays of
    `drawn` (one entry per file under `root`/images, as `_drawn` makes them: file_name, width,
    height, metadata, fault, lungs, opacities) free of planted faults whose file exists: lung
    boxes for ~80% of them, lung masks for another ~70% (some have only one of the two), severity
    scores (`severity_scores`) for ~85%. Each file carries one bad entry of each class that a
    reader must catch. Returns, per file, its path under `root`, the images it covers and the bad
    entries planted. A stream of its own: no other file changes."""
    root = Path(root)
    images = sorted((d for d in drawn if _annotatable(root, d)), key=lambda d: d["file_name"])
    names = [d["file_name"] for d in images]
    if not images:
        raise DataError(f"{root / 'images'}: no COVID-19 PA X-ray drawn there to annotate")
    if len(set(names)) != len(names):
        raise AssertionError("an image drawn twice under one name")  # a bug here, not user data
    rng = np.random.default_rng([seed, 11])
    n = len(images)
    order = rng.permutation(n)
    # Masks from the other end of one order than boxes: some images get only boxes, some only
    # masks, most both.
    boxed = sorted(order[: round(_BOXES_SHARE * n)])
    masked = sorted(order[n - round(_MASKS_SHARE * n) :])
    scored = sorted(rng.permutation(n)[: round(_SEVERITY_SHARE * n)])
    on_disk = {path.name for path in (root / "images").iterdir()}
    folder = root / ANNOTATIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "dir": root.name,
        "images": names,
        "boxes": _write_boxes(folder / BOXES_FILE, [images[i] for i in boxed], rng, on_disk),
        "masks": _write_masks(folder / MASKS_DIR, [images[i] for i in masked], rng, on_disk),
        "severity": _write_severity(
            folder / SEVERITY_FILE, [images[i] for i in scored], rng, on_disk
        ),
    }


def _unknown_name(rng: np.random.Generator, on_disk: set[str], suffix: str) -> str:
    """A GUID-like file name that no file under images/ has, stem included."""
    stems = {Path(name).stem for name in on_disk}
    while True:
        stem = _hex_name(rng)
        if stem not in stems:
            return stem + suffix


def _coco_entry(entry: dict) -> tuple[dict, list[dict]]:
    """One images[] entry and its two lung boxes, ids to be numbered."""
    width, height, meta = entry["width"], entry["height"], entry["metadata"]
    image = {"license": 1, "file_name": entry["file_name"], "height": height, "width": width,
             "id": 0, "metadata": dict(meta)}  # fmt: skip
    attributes = {"Finding": [meta["finding"]], "View": [meta["view"]]}
    boxes = []
    for category, lung in enumerate(entry["lungs"], start=1):
        bbox = lung_box(lung, width, height)
        area = bbox[2] * bbox[3]
        boxes.append({"segmentation": [], "area": area, "image_id": 0, "bbox": bbox, "id": 0,
                      "category_id": category, "attributes": dict(attributes)})  # fmt: skip
    return image, boxes


def _write_boxes(
    path: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """The COCO file of lung boxes, with its bad entries: an unknown file, a file named twice, a
    non-numeric coordinate, an unknown category, a box past the image's edge, a wrong size."""
    entries = [_coco_entry(d) for d in images]
    n = len(entries)
    picks = rng.choice(n, 5, replace=n < 5)
    twice, non_numeric, unknown_category, outside, resized = (entries[i] for i in picks)
    copy = _coco_entry(images[picks[0]])  # as it was: before the changes below
    # With fewer than five images some share one, so each change takes a box of its own, and
    # the third box spans the first two before any of them changes.
    (x0, y0, w0, h0), (x1, y1, w1, h1) = (box["bbox"] for box in unknown_category[1][:2])
    left, top = min(x0, x1), min(y0, y1)
    right, bottom = max(x0 + w0, x1 + w1), max(y0 + h0, y1 + h1)
    unknown_category[1].append(
        dict(unknown_category[1][0], bbox=[left, top, right - left, bottom - top],
             area=(right - left) * (bottom - top), category_id=3)
    )  # fmt: skip
    non_numeric[1][0]["bbox"][int(rng.integers(4))] = "n/a"
    width = outside[0]["width"]
    x, y, w, h = outside[1][1]["bbox"]
    outside[1][1]["bbox"] = [width - w // 2, y, w, h]
    actual = [resized[0]["width"], resized[0]["height"]]
    resized[0]["width"], resized[0]["height"] = round(1.5 * actual[0]), round(1.5 * actual[1])
    entries.insert(int(rng.integers(picks[0] + 1, n + 1)), copy)
    stranger = _coco_entry(images[int(rng.integers(n))])
    stranger[0]["file_name"] = _unknown_name(rng, on_disk, ".jpg")
    entries.insert(int(rng.integers(len(entries) + 1)), stranger)
    annotations = []
    for image_id, (image, boxes) in enumerate(entries, start=1):
        image["id"] = image_id
        for box in boxes:
            box["image_id"], box["id"] = image_id, len(annotations) + 1
            annotations.append(box)
    with atomic_open(path, "w", encoding="utf-8") as handle:
        # Laid out as the collection's file: one line per image and per box.
        handle.write("{\n")
        for key, value in _BOXES_HEAD.items():
            handle.write(f'  "{key}": {json.dumps(value)},\n')
        handle.write('  "images": [\n    ')
        handle.write(",\n    ".join(json.dumps(image) for image, _ in entries))
        handle.write('\n  ],\n  "annotations": [\n    ')
        handle.write(",\n    ".join(json.dumps(box) for box in annotations))
        handle.write("\n  ]\n}\n")

    def where(entry: tuple[dict, list[dict]], box: int | None = None) -> dict:
        found = {"file_name": entry[0]["file_name"], "image_id": entry[0]["id"]}
        return found if box is None else {**found, "annotation_id": entry[1][box]["id"]}

    return {
        "path": f"{ANNOTATIONS_DIR}/{BOXES_FILE}",
        "images": sorted(d["file_name"] for d in images),
        "bad": {
            "unknown_file": where(stranger),
            "duplicate_file_name": {
                "file_name": copy[0]["file_name"],
                "image_ids": [twice[0]["id"], copy[0]["id"]],
            },
            "non_numeric_bbox": {**where(non_numeric, 0), "bbox": non_numeric[1][0]["bbox"]},
            "unknown_category": {**where(unknown_category, 2), "category_id": 3},
            "box_outside_image": {
                **where(outside, 1),
                "bbox": outside[1][1]["bbox"],
                "width": width,
            },
            "wrong_image_size": {
                **where(resized),
                "listed": [resized[0]["width"], resized[0]["height"]],
                "actual": actual,
            },
        },
    }


def _write_masks(
    folder: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """One lung mask per image, with its bad entries: a mask at half its image's size, a mask of
    a file that is not in the collection."""
    folder.mkdir(parents=True, exist_ok=True)
    wrong = int(rng.integers(len(images)))
    written: dict[str, str] = {}
    for k, entry in enumerate(images):
        width, height = entry["width"], entry["height"]
        name = f"{Path(entry['file_name']).stem}_mask.png"
        if k == wrong:  # drawn on a downscaled copy of the image
            width, height = max(1, width // 2), max(1, height // 2)
            wrong_size = {"file_name": entry["file_name"], "mask": name, "size": [width, height],
                          "image_size": [entry["width"], entry["height"]]}  # fmt: skip
        if name in written:
            raise AssertionError(f"two images share the mask name {name}")  # a bug here
        _save_mask(folder / name, lung_mask(entry["lungs"], width, height))
        written[name] = entry["file_name"]
    model = images[int(rng.integers(len(images)))]
    stranger = _unknown_name(rng, on_disk, "_mask.png")
    _save_mask(folder / stranger, lung_mask(model["lungs"], model["width"], model["height"]))
    return {
        "path": f"{ANNOTATIONS_DIR}/{MASKS_DIR}",
        "images": sorted(written.values()),
        "bad": {"wrong_size": wrong_size, "unknown_file": {"mask": stranger}},
    }


def _save_mask(path: Path, mask: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def _write_severity(
    path: Path, images: list[dict], rng: np.random.Generator, on_disk: set[str]
) -> dict:
    """The severity scores, with their bad rows: a non-numeric value, a value out of range, a
    row given twice, a row of a file that is not in the collection."""
    scores = [
        [f"{value:.1f}" for value in severity_scores(entry["lungs"], entry["opacities"])]
        for entry in images
    ]
    rows = [[entry["file_name"], *values] for entry, values in zip(images, scores, strict=True)]
    n = len(rows)
    non_numeric, out_of_range, twice = (int(i) for i in rng.choice(n, 3, replace=n < 3))
    copy = list(rows[twice])
    rows[non_numeric][2] = _NOT_A_NUMBER
    rows[out_of_range][1] = "9.5"
    rows.insert(int(rng.integers(twice + 1, n + 1)), copy)
    stranger = [_unknown_name(rng, on_disk, ".png"), *scores[int(rng.integers(n))]]
    rows.insert(int(rng.integers(len(rows) + 1)), stranger)
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        for comment in _SEVERITY_COMMENTS:
            handle.write(comment + "," * (len(SEVERITY_COLUMNS) - 1) + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(SEVERITY_COLUMNS)
        writer.writerows(rows)
    return {
        "path": f"{ANNOTATIONS_DIR}/{SEVERITY_FILE}",
        "images": sorted(entry["file_name"] for entry in images),
        "bad": {
            "non_numeric": {"filename": images[non_numeric]["file_name"],
                            "column": "opacity_mean", "value": _NOT_A_NUMBER},
            "out_of_range": {"filename": images[out_of_range]["file_name"],
                             "column": "geographic_mean", "value": 9.5},
            "duplicate_row": {"filename": copy[0]},
            "unknown_file": {"filename": stranger[0]},
        },
    }  # fmt: skip
