"""Atomic writes: the file appears complete or not at all, with the mode open() would give."""

from __future__ import annotations

import os

import pytest

from cxr.io import atomic_open, atomic_path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_path_keeps_the_suffix_and_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "plot.png"
    with atomic_path(target) as tmp:
        assert tmp == tmp_path / "sub" / ".plot.png.part.png"  # parent created
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    assert [p.name for p in target.parent.iterdir()] == ["plot.png"]


def test_atomic_path_without_suffix(tmp_path):
    with atomic_path(tmp_path / "a.tfrecord", suffix_like=False) as tmp:
        assert tmp.name == ".a.tfrecord.part"
        tmp.write_bytes(b"x")
    assert (tmp_path / "a.tfrecord").read_bytes() == b"x"


def test_atomic_path_removes_the_temporary_file_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_path_gives_the_mode_of_a_plain_open(tmp_path):
    with atomic_path(tmp_path / "w.h5") as tmp:
        tmp.write_bytes(b"x")
        tmp.chmod(0o600)  # as a library writing through mkstemp would leave it
    assert (tmp_path / "w.h5").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_atomic_open_writes_and_cleans_up(tmp_path):
    with atomic_open(tmp_path / "a.json", "w", encoding="utf-8") as handle:
        handle.write("{}")
    with pytest.raises(ValueError), atomic_open(tmp_path / "b.json") as handle:
        handle.write("{")
        raise ValueError
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~_umask()
