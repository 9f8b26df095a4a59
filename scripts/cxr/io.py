"""Atomic, deterministic file writing: a killed job never leaves a half-written output that
looks complete, and the same content always gives the same bytes."""

from __future__ import annotations

import contextlib
import hashlib
import json
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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON with sorted keys and a trailing newline, atomically (byte-stable output)."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a DataFrame as CSV atomically, without the index, with '\\n' line endings."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False, lineterminator="\n")


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
