"""Adapter for a folder of images of one class (Kermany normals, NIH "No Finding").

The patient key comes from the file name through a configurable regular expression with one
group: Kermany `(?:NORMAL2-)?(IM-\\d{4})`, NIH `(\\d{8})_\\d{3}`."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from cxr.errors import ConfigError, DataError
from cxr.sources import IMAGE_SUFFIXES, RECORD_COLUMNS


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
        reason = ""
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            reason = f"not an image file name ({path.suffix or 'no suffix'})"
        elif not match:
            reason = f"no patient key in file name (pattern {spec['patient_pattern']!r})"
        rows.append(
            {
                "record": rel,
                "source": name,
                "file": rel,
                "patient": f"{name}:{match.group(1)}" if match else "",
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
            }
        )
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)
