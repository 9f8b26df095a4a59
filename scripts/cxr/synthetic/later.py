"""A later snapshot of the COVID-19 collection, as it grew after March 2020: every row and file
of the first snapshot in the later column layout (lower-case names, hierarchical findings), new
patients from a new hospital, follow-ups of first-snapshot patients (same chest), byte-identical
re-uploads under new patient ids, and rows that the curation rules exclude. Streams of its own:
the first snapshot's files do not change."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cxr.io import atomic_open
from cxr.synthetic import streams
from cxr.synthetic.drawing import Anatomy, patient_anatomy, render_chest
from cxr.synthetic.names import LATER_DIR, hex_name
from cxr.synthetic.styles import encode, new_hospital_style
from cxr.synthetic.truth import drawn_entry, image_metadata

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
    (`drawn_entry`; a copy, re-uploads included, takes those recorded when its picture was first
    drawn), as for the first snapshot. Returns a summary."""
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
            drawn.append(entry if row is None else {**entry, "metadata": image_metadata(row)})

    rng = streams.rng(seed, streams.LATER_PLAN)
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
        style = new_hospital_style(streams.rng(seed, streams.LATER_STYLE, index), image_size)
        covid = finding.endswith("COVID-19")
        name = f"{stem}.png"
        planted: list[dict] = []
        findings: dict = {}
        pixels = render_chest(
            streams.rng(seed, streams.LATER_IMAGE, index), style.width, style.height,
            anatomy=anatomy, signal=signal if covid else 0.5 * signal, planted=planted,
            findings=findings,
        )  # fmt: skip
        truth.extend({"source_dir": LATER_DIR, "file": f"images/{name}", **b} for b in planted)
        (images / name).write_bytes(encode(pixels, style))
        rows.append(_new_row(rng, patient, finding, view, name, index))
        drawn.append(drawn_entry(LATER_DIR, name, style, findings, rows[-1]))
        index += 1
        return name

    for k in range(n_patients):
        pid = first_pid + k
        anatomy = patient_anatomy(seed, streams.LATER_ANATOMY, pid)
        for j in range(int(rng.integers(1, 4))):
            add(str(pid), anatomy, finding="Pneumonia/Viral/COVID-19",
                stem=f"covid-19-madrid-{pid}-{'abc'[j]}")  # fmt: skip
        summary["new_patients"].append(str(pid))
    followed = {r["Patientid"]: r for r in usable}
    for pid in sorted(followed, key=int)[:3]:
        anatomy = patient_anatomy(seed, streams.DISEASE_ANATOMY, int(pid))
        name = add(pid, anatomy, finding="Pneumonia/Viral/COVID-19",
                   stem=f"covid-19-follow-up-{pid}-day20")  # fmt: skip
        summary["follow_ups"].append(name)
    for k, original in enumerate(usable[-2:]):
        pid = str(first_pid + n_patients + k)
        name = f"{hex_name(rng)}{Path(original['filename']).suffix}"
        (images / name).write_bytes((first_root / "images" / original["filename"]).read_bytes())
        copy_truth(f"images/{original['filename']}", f"images/{name}")
        rows.append(_new_row(rng, pid, "Pneumonia/Viral/COVID-19", "PA", name, index))
        copy_drawn(original["filename"], name, rows[-1])  # same picture, another patient id
        summary["reuploads"][name] = original["filename"]
    other = first_pid + n_patients + 2
    for finding, view in (("Pneumonia/Bacterial/Streptococcus", "PA"), ("No Finding", "PA")):
        anatomy = patient_anatomy(seed, streams.LATER_ANATOMY, other)
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
