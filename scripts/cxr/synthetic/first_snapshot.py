"""The first snapshot of the COVID-19 collection (ieee8023, March 2020): its metadata.csv rows
in the real column layout and vocabularies, the planted faults of the real snapshot (a missing
file, a truncated file, one picture under two patient ids, HTML in a note, a space in a name,
unusual image modes), and the red arrows that a fraction `marks` of the COVID-19 X-rays free of
planted faults carry, as published figures do (saved in RGB, listed as `coloured_marks`). Marks
come from streams of their own: they change no other image."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from cxr.io import atomic_open
from cxr.synthetic import streams
from cxr.synthetic.drawing import draw_arrow, patient_anatomy, render_chest
from cxr.synthetic.names import hex_name
from cxr.synthetic.styles import Style, encode, shared_style
from cxr.synthetic.truth import drawn_entry

# Column names of ieee8023/covid-chestxray-dataset at 2020-03-18, including the leading space of
# " url" and the unnamed trailing column that makes every line end with a comma.
METADATA_COLUMNS = [
    "Patientid", "offset", "sex", "age", "finding", "survival", "view", "modality", "date",
    "location", "filename", "doi", " url", "license", "clinical notes", "other notes", "",
]  # fmt: skip
SCRIPT_NOTE = "<script>alert(1)</script>"
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


def disease_plan(rng: np.random.Generator, n_patients: int, image_size: int) -> list[dict]:
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
                    stem = hex_name(rng)
                else:
                    stem = f"lancet-case{pid}{letter}"
            else:
                row["date"] = "2004" if finding == "SARS" else "2017"
                row["survival"] = ""
                stem = f"{finding}-synthetic-{pid}-Fig{k + 1}-day{int(offsets[k])}"
            row["_stem"] = stem
            row["_style"] = shared_style(rng, image_size)
            if n_images == 1 and rng.random() < 0.3:
                row["offset"] = ""
            rows.append(row)
    # A few CT slices attached to COVID-19 patients: a modality curation must exclude.
    covid_first = [r for r in rows if r["finding"] == "COVID-19" and r["_k"] == 0]
    for i, source in enumerate(covid_first[-3:]):
        ct_row = dict(source, view="Axial", modality="CT", _ct=True, _k=9)
        ct_row["_stem"] = f"synthetic-ct-{source['Patientid']}-g00{i + 1}-l"
        ct_row["_style"] = shared_style(rng, image_size)
        ct_row["clinical notes"] = "Ground-glass opacities in both lower lobes on CT"
        rows.insert(rows.index(source) + 1, ct_row)
    return rows


def plant_disease_faults(rng: np.random.Generator, rows: list[dict]) -> None:
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
    copy["_stem"] = hex_name(rng)
    copy["_style"] = dup_source["_style"]
    copy["_duplicate_of"] = dup_source
    rows.insert(rows.index(dup_owner) + 1, copy)
    # Unusual modes that the image loader must handle; forced to PNG, which alone can hold them.
    for row, mode in zip(chosen[6:9], ["RGBA", "I;16", "P"], strict=True):
        style = row["_style"]
        row["_style"] = Style(style.width, style.height, "PNG", mode, style.quality, 0.0)


def choose_marks(rows: list[dict], seed: int, fraction: float) -> None:
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
    order = streams.rng(seed, streams.MARKS).permutation(len(eligible))
    for index in order[: round(fraction * len(eligible))]:
        row = eligible[index]
        row["_mark"] = True
        row["_style"] = replace(row["_style"], mode="RGB")


def _extension(style: Style, rng: np.random.Generator) -> str:
    return ".png" if style.fmt == "PNG" else str(rng.choice([".jpeg", ".jpg"]))


def write_disease(
    root: Path,
    rows: list[dict],
    seed: int,
    signal: float,
    truth: list[dict],
    drawn: list[dict] | None = None,
) -> dict:
    """Write images/ and metadata.csv; return the planted faults by file name. Appends to
    `truth` what each written file has planted in it, and to `drawn` its lungs and opacities
    (`drawn_entry`)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    name_rng = streams.rng(seed, streams.DISEASE_EXTENSIONS)
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
            data = encode(_render_disease(row, index, seed, signal, planted, findings), style)
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
            drawn.append(drawn_entry(root.name, row["filename"], style, findings, row, fault or ""))
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
    pid = int(row["Patientid"])
    anatomy = None if row["_ct"] else patient_anatomy(seed, streams.DISEASE_ANATOMY, pid)
    pixels = render_chest(
        streams.rng(seed, streams.DISEASE_IMAGE, index), style.width, style.height,
        anatomy=anatomy, signal=signal, marker=style.marker, ct=row["_ct"], planted=planted,
        findings=findings,
    )  # fmt: skip
    if row.get("_mark"):
        rng = streams.rng(seed, streams.ARROWS, index)
        pixels = draw_arrow(pixels, anatomy, rng, planted)
    return pixels
