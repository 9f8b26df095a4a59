"""Adapter for ieee8023/covid-chestxray-dataset `metadata.csv` in any of its versions.

Known quirks (checked against the 2020-03-18 snapshot and later releases):
- `Patientid` (2020-03) vs `patientid` (later); ` url` with a leading space; `clinical notes`
  vs `clinical_notes`; a trailing unnamed empty column; `folder` and `modality` only in some.
- `finding` flat (`COVID-19`) early, hierarchical (`Pneumonia/Viral/COVID-19`) later.
- Early versions have no `modality`: CT slices are then recognisable by their view."""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cxr.errors import DataError
from cxr.listing import entry_reason, is_own, normalise_name, walk_root
from cxr.sources import IMAGE_SUFFIXES, RECORD_COLUMNS, patient_namespace

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


@dataclass(frozen=True)
class MetadataRow:
    """One data row of metadata.csv."""

    line: int  # physical line where the row starts (quoted newlines make rows span lines)
    fields: dict[str, str]  # value by normalised column name; '' where the row is short
    problem: str = ""  # why the row cannot be read as the header says (then `fields` is {})


def read_metadata(path: Path) -> list[MetadataRow]:
    """Read metadata.csv as strings by column name. Bad bytes are replaced (and logged). A row
    the CSV parser cannot read as the header says (more fields than the header, a stray quote)
    comes back with its `problem`, to be excluded; a quote that leaves the end of its row in
    doubt stops the run (`_parse_csv`)."""
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
    text = raw.decode("utf-8-sig", errors="replace")
    (header_line, header, problem), *rows = _parse_csv(path, text)
    if problem:
        raise DataError(f"{path}, line {header_line} (the header): {problem}")
    # Empty header cells name no column (a trailing comma); the first of two equal names wins.
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        if name.strip():
            columns.setdefault(normalise_column(name), index)
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(
            f"{path}: required column(s) {missing} not found; columns present: "
            f"{list(columns)}. Is this an ieee8023 covid-chestxray-dataset metadata.csv?"
        )
    width = len(header)
    read = []
    for line, fields, problem in rows:
        if not problem and any(value.strip() for value in fields[width:]):
            problem = f"{len(fields)} fields, the header has {width}: an unquoted comma in a field?"
        if problem:
            problem += f" Fix line {line} of {path.name} to use this row."
            read.append(MetadataRow(line, {}, problem))
            continue
        values = {c: fields[i] if i < len(fields) else "" for c, i in columns.items()}
        read.append(MetadataRow(line, values))
    return read


STRAY_QUOTE = (
    'a quote ends a field and more text follows it (like "5" tall): quote the whole field and '
    'write each quote in it as two ("").'
)


def _parse_csv(path: Path, text: str) -> list[tuple[int, list[str], str]]:
    """(line where it starts, fields, problem) of each non-blank row of `text`, read strictly.
    A stray quote in a one-line row makes that row a problem (its end is certain); a quote
    that never closes, or one that swallowed line ends, leaves every later row in doubt and
    stops the run, naming the line. Fields may be of any length (the csv module's size limit
    only guards against runaway quotes, caught here)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        rows, start = [], 1
        while (row := _next_row(reader)) is not None:
            fields, error = row
            if error and ("end of data" in error or reader.line_num != start):
                raise DataError(_runaway_quote(path, start, reader.line_num, error))
            if fields or error:
                rows.append((start, fields, STRAY_QUOTE if error else ""))
            start = reader.line_num + 1
    finally:
        csv.field_size_limit(limit)
    if not rows:
        raise DataError(f"{path}: metadata file is empty (0 rows, no header)")
    return rows


def _next_row(reader) -> tuple[list[str], str] | None:
    """(fields, '') or ([], the parser's error) for the next row; None after the last."""
    try:
        return next(reader), ""
    except StopIteration:
        return None
    except csv.Error as exc:  # the reader goes on at the next line
        return [], str(exc)


def _runaway_quote(path: Path, start: int, end: int, error: str) -> str:
    if "end of data" in error:
        where = (
            f"line {start}: a quote opens in the row that starts here and never closes "
            f"(lines {start}-{end} would be one field)"
        )
    else:
        where = (
            f"line {end}: a quote ends a field and more text follows it, in a row that starts "
            f"on line {start} (a quote opened there swallowed the line ends up to here?)"
        )
    remedy = 'Close the quote, or write a quote inside a field as two (""), then rerun.'
    return f"{path}, {where}. {remedy}"


def load_records(name: str, root: Path, spec: dict) -> pd.DataFrame:
    """One record per metadata row, plus one per entry under the root that no row names (the
    metadata file aside): an image without a row, a stray file, a hidden or special one."""
    meta_name = spec.get("metadata", "metadata.csv")
    meta_path = root / meta_name
    metadata = read_metadata(meta_path)
    entries = [e for e in walk_root(root) if not is_own(e.path, own_files(spec))]
    image_dir = spec.get("images", "images")
    on_disk = {e.path for e in entries}
    by_name: dict[str, str] = {}
    for entry in entries:
        by_name.setdefault(normalise_name(entry.path), entry.path)

    def located(relative: str) -> str:
        """The file a metadata path names: as written if it is on disk, else the one whose
        normalised name matches ('./x.png', 'x.png ', another Unicode normalisation)."""
        if relative in on_disk:
            return relative
        key = normalise_name(relative)
        return by_name.get(key, key)

    blank = dict.fromkeys(RECORD_COLUMNS, "")
    rows = []
    for meta in metadata:
        record = {
            **blank,
            "record": f"{meta_path.name}:line {meta.line}",
            "source": name,
            "label": spec["label"],
        }
        if meta.problem:
            rows.append({**record, "pre_exclusion": "malformed row", "pre_detail": meta.problem})
            continue
        row = meta.fields
        view = row["view"].strip()
        if row.get("modality", "").strip():
            modality = row["modality"].strip()
        else:
            modality = "CT" if view.lower() in CT_VIEWS else "X-ray"
        folder = row.get("folder", "").strip()
        filename = row["filename"]
        if not filename.strip():
            rel = ""
        elif filename.startswith(("/", "\\")):
            rel = filename  # kept as given so curation rejects it as outside the data root
        else:
            rel = located(f"{folder or image_dir}/{filename}")
        rows.append(
            {
                **record,
                "file": rel,
                "patient": f"{patient_namespace(name, spec)}:{row['patientid'].strip()}",
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
    for entry in entries:
        if entry.path in named:
            continue
        reason, detail = entry_reason(root, entry)
        suffix = Path(entry.path).suffix
        if not reason:
            reason = (
                "no metadata row"
                if suffix.lower() in IMAGE_SUFFIXES
                else f"not an image file name ({suffix or 'no suffix'})"
            )
        rows.append(
            {
                **blank,
                "record": entry.path,
                "source": name,
                "file": entry.path,
                "label": spec["label"],
                "pre_exclusion": reason,
                "pre_detail": detail,
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


# The collection's expert annotations (April 2020 on): they describe images, rule
# curate_annotations reads and accounts for them (cxr.annotations); they are not inputs.
ANNOTATIONS_FOLDER = "annotations/"


def own_files(spec: dict) -> list[str]:
    """The metadata file and the annotations folder (a name ending in "/": everything under
    it) describe the inputs; they are not inputs."""
    return [spec.get("metadata", "metadata.csv"), ANNOTATIONS_FOLDER]


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
