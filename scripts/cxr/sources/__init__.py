"""One adapter per source kind. Each turns a source on disk into candidate records with the
same columns (RECORD_COLUMNS), one per input row or file, and reads the metadata rules in its
own vocabulary (`rule_reasons`), so curation never sees a quirk."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pandas as pd

from cxr.errors import ConfigError

if TYPE_CHECKING:
    from cxr.curate import Rules

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

RECORD_COLUMNS = [
    "record",  # where the input came from: "metadata.csv:line 7" or the file name
    "source",  # source name from config
    "file",  # path relative to the source root, as the metadata/listing gives it
    "patient",  # patient key, prefixed with the source's patient namespace (`patient_namespace`)
    "label",  # class the source assigns (curation decides whether the row is kept)
    "finding",
    "view",
    "modality",
    "license",
    "url",
    "notes",
    "pre_exclusion",  # a reason the adapter already knows (e.g. no metadata row), else ""
    "pre_detail",  # what the exclusion log's `detail` says about that reason
]


def adapter(name: str, spec: dict) -> ModuleType:
    """The adapter module of `spec['kind']`: `load_records(name, root, spec)`,
    `rule_reasons(records, rules)` and `own_files(spec)`, the same for every kind."""
    from cxr.sources import folder, ieee8023

    adapters = {"ieee8023": ieee8023, "folder": folder}
    kind = spec.get("kind")
    if kind not in adapters:
        raise ConfigError(
            f"sources.{name}.kind is {kind!r}; known kinds: {', '.join(sorted(adapters))}"
        )
    return adapters[kind]


def patient_namespace(name: str, spec: dict) -> str:
    """The prefix of a source's patient keys: its own name, so that the keys of two sources never
    collide, unless config says it numbers patients as another source does (`same_patients_as`,
    a later snapshot of one collection): then one patient has one key in both."""
    return spec.get("same_patients_as") or name


def patient_key(name: str, spec: dict, raw: str) -> str:
    """The patient key of an id as the source writes it (trimmed); '' when there is none."""
    raw = raw.strip()
    return f"{patient_namespace(name, spec)}:{raw}" if raw else ""


def load_source(name: str, spec: dict) -> pd.DataFrame:
    """Candidate records of source `name`, one per input row or file (RECORD_COLUMNS)."""
    records = adapter(name, spec).load_records(name, Path(spec["root"]), spec)
    return records[RECORD_COLUMNS]


def own_files(name: str, spec: dict) -> list[str]:
    """Files under the source's root that describe the inputs rather than being inputs (the
    metadata file), relative to the root."""
    return adapter(name, spec).own_files(spec)


def rule_reasons(name: str, spec: dict, records: pd.DataFrame, rules: Rules) -> pd.Series:
    """Reason each record fails the metadata rules, as its source's adapter reads them ('' when
    it passes)."""
    return adapter(name, spec).rule_reasons(records, rules)
