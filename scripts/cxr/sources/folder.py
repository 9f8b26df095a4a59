"""Adapter for a folder of images of one class (Kermany normals, NIH "No Finding").

The patient key comes from the file name through a configurable regular expression with one
group: Kermany `(?:NORMAL2-)?(IM-\\d{4})`, NIH `(\\d{8})_\\d{3}`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cxr.errors import ConfigError, DataError
from cxr.sources import IMAGE_SUFFIXES, RECORD_COLUMNS

if TYPE_CHECKING:
    from cxr.curate import Rules


def _listing_order(path: Path) -> tuple[str, bool, str]:
    """Sort 'IM-0019-0001 (1).jpeg' (a copy, as browsers and OSes name them) after the original,
    so that duplicate detection keeps the original name and logs the copy."""
    original = re.sub(r" \(\d+\)(?=\.[^.]+$)", "", path.as_posix())
    return original, original != path.as_posix(), path.as_posix()


def load_records(name: str, root: Path, spec: dict) -> pd.DataFrame:
    """One record per regular file under `root` (recursively, sorted, hidden files skipped)."""
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
    for path in sorted(root.rglob("*"), key=_listing_order):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.is_dir():
            continue
        match = pattern.search(path.name)
        # No match, or a group that matched nothing (None) or only blanks: no patient key.
        key = match.group(1) if match and (match.group(1) or "").strip() else ""
        reason = ""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            reason = f"not an image file name ({path.suffix or 'no suffix'})"
        elif not key:
            reason = f"no patient key in file name (pattern {spec['patient_pattern']!r})"
        rows.append(
            {
                "record": rel,
                "source": name,
                "file": rel,
                "patient": f"{name}:{key}" if key else "",
                "label": spec["label"],
                "finding": "",
                "view": "",
                "modality": "X-ray",
                "license": spec.get("license", ""),
                "url": "",
                "notes": "",
                "pre_exclusion": reason,
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def rule_reasons(records: pd.DataFrame, rules: Rules) -> pd.Series:
    """A folder holds one class and has no metadata to read: every record passes ('')."""
    return pd.Series("", index=records.index, dtype=object)
