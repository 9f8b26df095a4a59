"""The two healthy sources: Kermany-style normals (`kermany-normal/`, the training negatives) and
NIH-style normals of adults (`nih-nofinding/`, an external test), named as the real ones are.
Each Kermany image takes, with probability `confound`, a source style that carries no pathology:
an "R" marker of amplitude `confound` in the top-left corner, larger size, grayscale JPEG; this
is the positive control of the leakage audit. With `confound=0` both classes share one
distribution of size, format, mode and border content (the negative control); the files then
keep their `.jpeg` names even when the drawn format is PNG, so that file names never separate
the classes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cxr.synthetic import streams
from cxr.synthetic.drawing import patient_anatomy, render_chest
from cxr.synthetic.styles import Style, encode, kermany_style, shared_style


def healthy_plan(rng: np.random.Generator, n_patients: int) -> list[tuple[str, str]]:
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


def write_healthy(
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
    style_rng = streams.rng(seed, streams.HEALTHY_STYLE)
    confounded = style_rng.random(len(files)) < confound
    styles = [
        kermany_style(style_rng, image_size, confound)
        if flag
        else shared_style(style_rng, image_size)
        for flag in confounded
    ]
    # Unconfounded images get the disease source's unusual modes too, so modes never separate.
    plain = np.flatnonzero(~confounded)
    modes: dict[str, str] = {}
    picks = style_rng.choice(plain, size=min(3, len(plain)), replace=False)
    for index, mode in zip(picks, ["RGBA", "I;16", "P"], strict=False):
        old = styles[index]
        styles[index] = Style(old.width, old.height, "PNG", mode, old.quality, 0.0)
        modes[mode] = files[index][1]
    for index, ((key, name), style) in enumerate(zip(files, styles, strict=True)):
        anatomy = patient_anatomy(seed, streams.HEALTHY_ANATOMY, int(key.removeprefix("IM-")))
        rng = streams.rng(seed, streams.HEALTHY_IMAGE, index)
        planted: list[dict] = []
        pixels = render_chest(
            rng, style.width, style.height, anatomy=anatomy, marker=style.marker, planted=planted
        )
        (root / name).write_bytes(encode(pixels, style))
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


def external_plan(rng: np.random.Generator, n_patients: int) -> list[tuple[str, str]]:
    """(patient id, file name) pairs in NIH's PPPPPPPP_FFF.png naming."""
    ids = np.sort(rng.choice(np.arange(1000, 30000), size=n_patients, replace=False))
    files = []
    for pid in ids:
        n_files = int(rng.choice([1, 1, 2, 2, 3]))
        for follow_up in np.sort(rng.choice(np.arange(0, 25), size=n_files, replace=False)):
            files.append((f"{pid:08d}", f"{pid:08d}_{follow_up:03d}.png"))
    return files


def write_external(root: Path, files: list[tuple[str, str]], seed: int, image_size: int) -> None:
    """Write the NIH-style images: no marker, no signal."""
    root.mkdir(parents=True, exist_ok=True)
    for index, (pid, name) in enumerate(files):
        style = shared_style(streams.rng(seed, streams.EXTERNAL_STYLE, index), image_size)
        # NIH ships 8-bit grayscale PNG; size follows the disease source, no marker, no signal.
        style = Style(style.width, style.height, "PNG", "L", style.quality, 0.0)
        anatomy = patient_anatomy(seed, streams.EXTERNAL_ANATOMY, int(pid))
        rng = streams.rng(seed, streams.EXTERNAL_IMAGE, index)
        pixels = render_chest(rng, style.width, style.height, anatomy=anatomy)
        (root / name).write_bytes(encode(pixels, style))
