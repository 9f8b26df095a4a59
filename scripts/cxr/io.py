"""Atomic, deterministic file writing: a killed job never leaves a half-written output that
looks complete, and the same content always gives the same bytes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path`; rename it onto `path` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def finite_or_none(value: Any) -> float | None:
    """A float, or None where it is None, NaN or infinite: JSON has no NaN or infinity, and a
    missing statistic is written as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, atomically (byte-stable output)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a DataFrame as UTF-8 CSV atomically, without the index, with '\\n' line endings,
    such that it reads back to the same rows: every field holding a quote, comma, '\\n' or
    '\\r' is quoted. Missing values are written as empty fields."""
    text = _csv_text(frame)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{path}: {_unencodable_cell(frame)}") from None
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _csv_text(frame) -> str:
    """The csv module quotes a field only for the characters of its line terminator, so with
    '\\n' a lone '\\r' (old Mac or Excel line endings) went unquoted and read back as a row
    break. Write with '\\r\\n', which quotes both, then end records with '\\n': outside quotes
    (the even parts between '"'; a doubled quote is an empty odd part) '\\r\\n' can only be
    a record's end. Files without a '\\r' come out as with '\\n' alone, byte for byte.
    A one-column table quotes its text, since readers skip a line of blanks as no row."""
    quoting = csv.QUOTE_NONNUMERIC if len(frame.columns) == 1 else csv.QUOTE_MINIMAL
    parts = frame.to_csv(index=False, lineterminator="\r\n", quoting=quoting).split('"')
    parts[::2] = [part.replace("\r\n", "\n") for part in parts[::2]]
    return '"'.join(parts)


def _unencodable_cell(frame) -> str:
    """Where a value without a UTF-8 form (a lone surrogate) sits, and what to do about it."""
    for column in frame.columns:
        for row, value in enumerate(frame[column], start=1):
            if isinstance(value, str):
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return (
                        f"column {column!r}, row {row} holds {value!r}, a lone surrogate with no "
                        "UTF-8 form (a non-UTF-8 byte decoded with surrogateescape?); escape it "
                        "before writing the table"
                    )
    return "a value has no UTF-8 form"


def read_table(path: str | os.PathLike):
    """One of the workflow's CSVs (images, exclusions, splits, removals, predictions, feature
    tables) as written by write_csv: ids and patient ids as text, empty cells as ""."""
    import pandas as pd

    return pd.read_csv(path, dtype={"patient": str, "id": str}, keep_default_na=False)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix_like: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (Keras, h5py);
    rename it onto `path` only if the block succeeds, remove it if not.

    The temporary name is `.{name}.part{suffix}`: with `suffix_like` it ends as `path` does
    (all its suffixes: Keras picks the format from `.keras` or `.weights.h5`), else `.part`.
    The file gets the mode a plain open() would give, as with atomic_open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix_like else ""
    tmp = path.with_name(f".{path.name}.part{suffix}")
    try:
        yield tmp
        if tmp.is_file():
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_or_check(path: str | os.PathLike, text: str, *, check: bool, remedy: str) -> int:
    """For a generated file kept in the repository: write `text` to `path` (0), or with
    `check` only compare, printing whether it is current (0) or out of date and the `remedy`
    (1). A missing file is out of date."""
    path = Path(path)
    if check:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            print(f"{path} is current")
            return 0
        print(f"{path} is out of date: {remedy}")
        return 1
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"wrote {path}")
    return 0
