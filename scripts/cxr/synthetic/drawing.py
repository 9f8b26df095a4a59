"""Drawing one chest picture: a patient's anatomy (body, lungs, heart, ribs, position), then
per image its pose, opacities inside the lungs scaled by `signal`, an "R" source marker in the
top-left corner scaled by `marker`, gain and noise; and the red arrow that published figures
point at a lung with. Every image of one patient shows the same chest (`patient_anatomy`, keyed
by the patient id), so an image-level split leaks patients as it does on the real data; CT slices
keep a look of their own. What is planted where can be recorded (ground-truth rows, `findings`)
without changing a pixel or a random draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from cxr.synthetic import streams

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


def patient_anatomy(seed: int, stream: int, patient: int) -> Anatomy:
    """The chest of `patient` in an anatomy `stream` (`cxr.synthetic.streams`): keyed by the
    patient, apart from the images' streams, so that every image of one patient shows the same
    chest, which is what an image-level (not patient-grouped) split leaks."""
    return Anatomy.draw(streams.rng(seed, stream, patient))


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


def draw_arrow(
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
