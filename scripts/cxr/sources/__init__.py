"""One adapter per source kind. Each turns a source on disk into candidate records with the
same columns (RECORD_COLUMNS), one per input row or file, so curation never sees a quirk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr.errors import ConfigError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp"}

RECORD_COLUMNS = [
    "record",  # where the input came from: "metadata.csv:line 7" or the file name
    "source",  # source name from config
    "file",  # path relative to the source root, as the metadata/listing gives it
    "patient",  # patient key, prefixed with the source name (keys of two sources never collide)
    "label",  # class the source assigns (curation decides whether the row is kept)
    "finding",
    "view",
    "modality",
    "license",
    "url",
    "notes",
    "pre_exclusion",  # a reason the adapter already knows (e.g. no metadata row), else ""
]


def load_source(name: str, spec: dict) -> pd.DataFrame:
    """Dispatch to the adapter named by `spec['kind']`."""
    from cxr.sources import folder, ieee8023

    adapters = {"ieee8023": ieee8023.load_records, "folder": folder.load_records}
    kind = spec.get("kind")
    if kind not in adapters:
        raise ConfigError(
            f"sources.{name}.kind is {kind!r}; known kinds: {', '.join(sorted(adapters))}"
        )
    records = adapters[kind](name, Path(spec["root"]), spec)
    return records[RECORD_COLUMNS]
