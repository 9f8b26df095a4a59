"""Adapter for a folder of images of one class (Kermany normals, NIH "No Finding").

The patient key comes from the file name through a configurable regular expression with one
group: Kermany `(?:NORMAL2-)?(IM-\\d{4})`, NIH `(\\d{8})_\\d{3}`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cxr.errors import ConfigError, DataError
from cxr.listing import Entry, entry_reason, walk_root
from cxr.sources import IMAGE_SUFFIXES, RECORD_COLUMNS, patient_key

if TYPE_CHECKING:
    from cxr.curate import Rules


def _listing_order(entry: Entry) -> tuple[str, bool, str]:
    """Sort 'IM-0019-0001 (1).jpeg' (a copy, as browsers and OSes name them) after the original,
    so that duplicate detection keeps the original name and logs the copy."""
    original = re.sub(r" \(\d+\)(?=\.[^.]+$)", "", entry.path)
    return original, original != entry.path, entry.path


def load_records(name: str, root: Path, spec: dict) -> pd.DataFrame:
    """One record per entry under `root` (recursively, sorted): files, and hidden, special or
    linked entries with their reason."""
    if not root.is_dir():
        raise DataError(
            f"{root}: image folder of source {name!r} not found; check sources.{name}.root"
        )
    try:
        pattern = re.compile(spec["patient_pattern"])
    except re.error as exc:
        raise ConfigError(f"sources.{name}.patient_pattern is not a valid regex: {exc}") from None
    if pattern.groups < 1:
        raise ConfigError(f"sources.{name}.patient_pattern needs one (group) for the patient key")
    rows = []
    for entry in sorted(walk_root(root), key=_listing_order):
        file_name = entry.path.rsplit("/", 1)[-1]
        suffix = Path(file_name).suffix
        reason, detail = entry_reason(root, entry)
        match = None if reason else pattern.search(file_name)
        # No match, or a group that matched nothing (None) or only blanks: no patient key.
        key = match.group(1) if match and (match.group(1) or "").strip() else ""
        if not reason and suffix.lower() not in IMAGE_SUFFIXES:
            reason = f"not an image file name ({suffix or 'no suffix'})"
        elif not reason and not key:
            reason = f"no patient key in file name (pattern {spec['patient_pattern']!r})"
        rows.append(
            {
                "record": entry.path,
                "source": name,
                "file": entry.path,
                "patient": patient_key(name, spec, key),
                "label": spec["label"],
                "finding": "",
                "view": "",
                "modality": "X-ray",
                # A folder carries no per-image licence; the source's own (config) is shown by
                # the report, and curation does not get it, so editing it reruns no model.
                "license": "",
                "url": "",
                "notes": "",
                "pre_exclusion": reason,
                "pre_detail": detail,
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def own_files(spec: dict) -> list[str]:
    """A folder source has no metadata: every file under it is an input."""
    return []


def rule_reasons(records: pd.DataFrame, rules: Rules) -> pd.Series:
    """A folder holds one class and has no metadata to read: every record passes ('')."""
    return pd.Series("", index=records.index, dtype=object)
