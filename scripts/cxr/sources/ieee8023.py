"""Adapter for ieee8023/covid-chestxray-dataset `metadata.csv` in any of its versions.

Known quirks (checked against the 2020-03-18 snapshot and later releases):
- `Patientid` (2020-03) vs `patientid` (later); ` url` with a leading space; `clinical notes`
  vs `clinical_notes`; a trailing unnamed empty column; `folder` and `modality` only in some.
- `finding` flat (`COVID-19`) early, hierarchical (`Pneumonia/Viral/COVID-19`) later.
- Early versions have no `modality`: CT slices are then recognisable by their view."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cxr.errors import DataError
from cxr.sources import IMAGE_SUFFIXES, RECORD_COLUMNS

if TYPE_CHECKING:
    from cxr.curate import Rules

log = logging.getLogger(__name__)

REQUIRED = ("patientid", "finding", "view", "filename")
CT_VIEWS = {"axial", "coronal", "sagittal"}


def normalise_column(name: str) -> str:
    """' url' -> 'url', 'clinical notes' -> 'clinical_notes', 'Patientid' -> 'patientid'."""
    return re.sub(r"\s+", "_", str(name).strip().lower())


def finding_terms(finding: str) -> list[str]:
    """Split flat or hierarchical findings ('Pneumonia/Viral/COVID-19, ARDS') into terms."""
    return [t.strip() for t in re.split(r"[/,;]", finding or "") if t.strip()]


def canonical_term(term: str) -> str:
    """'COVID-19', 'covid19' and 'COVID 19' compare equal."""
    return re.sub(r"[^a-z0-9]", "", term.lower())


def read_metadata(path: Path) -> pd.DataFrame:
    """Read metadata.csv as strings; bad bytes are replaced (and logged), never fatal."""
    if not path.exists():
        raise DataError(f"{path}: metadata file not found; check sources.<name>.root in config")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: metadata file is empty (0 rows, no header)")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        log.warning(
            "%s: invalid UTF-8 at line %d; undecodable bytes replaced by U+FFFD", path, line
        )
    frame = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        encoding="utf-8",
        encoding_errors="replace",
        skipinitialspace=False,
    )
    frame = frame.loc[:, [c for c in frame.columns if not str(c).startswith("Unnamed:")]]
    frame.columns = [normalise_column(c) for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: required column(s) {missing} not found; columns present: "
            f"{list(frame.columns)}. Is this an ieee8023 covid-chestxray-dataset metadata.csv?"
        )
    return frame


def line_numbers(path: Path, n_rows: int) -> list[int]:
    """Physical line where each data row starts (quoted newlines make rows span lines)."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        starts = []
        line = reader.line_num + 1
        for _ in reader:
            starts.append(line)
            line = reader.line_num + 1
    if len(starts) != n_rows:  # pragma: no cover - csv and pandas disagree only on broken files
        return list(range(2, n_rows + 2))
    return starts


def load_records(name: str, root: Path, spec: dict) -> pd.DataFrame:
    """One record per metadata row, plus one per image file that no row names."""
    meta_path = root / spec.get("metadata", "metadata.csv")
    frame = read_metadata(meta_path)
    lines = line_numbers(meta_path, len(frame))
    image_dir = spec.get("images", "images")
    has_folder = "folder" in frame.columns
    has_modality = "modality" in frame.columns
    rows = []
    for i, row in enumerate(frame.to_dict("records")):
        view = row["view"].strip()
        if has_modality and row["modality"].strip():
            modality = row["modality"].strip()
        else:
            modality = "CT" if view.lower() in CT_VIEWS else "X-ray"
        folder = row.get("folder", "").strip() if has_folder else ""
        filename = row["filename"]
        if not filename.strip():
            rel = ""
        elif filename.startswith(("/", "\\")):
            rel = filename  # kept as given so curation rejects it as outside the data root
        else:
            rel = f"{folder or image_dir}/{filename}"
        rows.append(
            {
                "record": f"{meta_path.name}:line {lines[i]}",
                "source": name,
                "file": rel,
                "patient": f"{name}:{row['patientid'].strip()}",
                "label": spec["label"],
                "finding": row["finding"].strip(),
                "view": view,
                "modality": modality,
                "license": row.get("license", "").strip(),
                "url": row.get("url", "").strip(),
                "notes": row.get("clinical_notes", "").strip(),
                "pre_exclusion": "" if row["patientid"].strip() else "no patient id",
            }
        )
    named = {r["file"] for r in rows}
    named_folders = {r["file"].split("/", 1)[0] for r in rows if "/" in r["file"]}
    folders = {image_dir} | {f for f in named_folders if f not in ("", ".", "..")}
    for folder in sorted(folders):
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            rel = f"{folder}/{path.name}"
            if rel in named or path.name.startswith(".") or not path.is_file():
                continue
            suffix_ok = path.suffix.lower() in IMAGE_SUFFIXES
            rows.append(
                {
                    "record": rel,
                    "source": name,
                    "file": rel,
                    "patient": "",
                    "label": spec["label"],
                    "finding": "",
                    "view": "",
                    "modality": "",
                    "license": "",
                    "url": "",
                    "notes": "",
                    "pre_exclusion": "no metadata row"
                    if suffix_ok
                    else f"not an image file name ({path.suffix or 'no suffix'})",
                }
            )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def rule_reasons(records: pd.DataFrame, rules: Rules) -> pd.Series:
    """Reason each record fails the modality, finding or view rule ('' when it passes); findings
    match by term, flat or hierarchical ('Pneumonia/Viral/COVID-19' has 'COVID-19')."""
    reasons = pd.Series("", index=records.index, dtype=object)
    target = canonical_term(rules.disease_finding)
    wanted_views = {v.strip().lower() for v in rules.views}
    for idx, row in records.iterrows():
        if row["modality"].lower() != rules.modality.lower():
            reasons[idx] = f"modality {row['modality'] or '(empty)'}, not {rules.modality}"
        elif target not in {canonical_term(t) for t in finding_terms(row["finding"])}:
            reasons[idx] = f"finding {row['finding'] or '(empty)'!r}, not {rules.disease_finding}"
        elif row["view"].lower() not in wanted_views:
            reasons[idx] = f"view {row['view'] or '(empty)'!r}, not {'/'.join(rules.views)}"
    return reasons
