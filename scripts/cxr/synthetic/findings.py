"""What an expert would annotate on one picture, from the lungs and opacities it was drawn with
(`render_chest`'s `findings`): each lung's box, the lung mask, and the severity scores."""

from __future__ import annotations

import numpy as np

# Severity is measured against a fixed lung area, not each lung's own: the scores then depend on
# the opacities drawn alone, never on the anatomy a model also sees (at `signal: 0` they are
# independent of every pixel: the negative control). About the mean X-ray lung ellipse's area
# (pi x 0.105 x 0.23 in [0, 1] image coordinates).
REFERENCE_LUNG_AREA = 0.076
# The density (integrated opacity over the reference area, amplitudes before `signal`) that
# scores the full 3 of a lung; the densest lungs drawn reach about this.
OPACITY_FULL = 0.3


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
