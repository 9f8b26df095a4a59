"""Atomic writes: the file appears complete or not at all, with the mode open() would give."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from cxr.io import atomic_open, atomic_path, write_csv, write_or_check


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


# Every odd character a metadata field or file name can carry. A lone carriage return (old Mac
# or Excel line endings) is the one the csv module left unquoted with '\n' line endings.
ODD_TEXT = ["a\rb", "\r", "a\nb", "\n", "a\r\nb", "\r\n", "ends\r", 'say "hi"', '"', "c,d",
            "t\tb", "nul\x00l", "ünïcödé 日本", "\ufeffbom", "  lead", "trail  ", " ", "",
            "NA", "nan", "None", "null", "01", "1.0", "#x", "=1+1", "\\", "'q'"]  # fmt: skip


def _read_back(path):
    """As the workflow reads its CSVs: no NA guessing, text columns as str."""
    return pd.read_csv(path, keep_default_na=False, dtype={"text": str})


def test_write_csv_reads_back_to_the_same_rows_with_every_odd_character(tmp_path):
    frame = pd.DataFrame(
        {"text": ODD_TEXT, "n": range(len(ODD_TEXT)), "x": [i / 3 for i in range(len(ODD_TEXT))]}
    )
    write_csv(tmp_path / "odd.csv", frame)
    back = _read_back(tmp_path / "odd.csv")
    assert back["text"].tolist() == ODD_TEXT
    assert back["n"].tolist() == frame["n"].tolist() and back["x"].tolist() == frame["x"].tolist()
    # Each odd value on its own in a one-column file (an empty value is not an empty line).
    for value in ODD_TEXT:
        write_csv(tmp_path / "one.csv", pd.DataFrame({"text": [value, "after"]}))
        assert _read_back(tmp_path / "one.csv")["text"].tolist() == [value, "after"], repr(value)


def test_write_csv_writes_missing_text_as_empty(tmp_path):
    # The workflow's CSVs do not tell a missing text from an empty one: both read back as "".
    write_csv(tmp_path / "m.csv", pd.DataFrame({"text": ["a", None, float("nan"), ""]}))
    assert _read_back(tmp_path / "m.csv")["text"].tolist() == ["a", "", "", ""]


def test_write_csv_keeps_the_bytes_of_ordinary_tables(tmp_path):
    frame = pd.DataFrame({"id": ["a b.png", "c,d.png"], "notes": ["two\nlines", 'a "q"'],
                          "n": [1, 2], "x": [0.5, float("nan")]})  # fmt: skip
    write_csv(tmp_path / "t.csv", frame)
    assert (tmp_path / "t.csv").read_bytes() == (
        b'id,notes,n,x\na b.png,"two\nlines",1,0.5\n"c,d.png","a ""q""",2,\n'
    )


def test_write_csv_refuses_a_lone_surrogate_naming_the_cell(tmp_path):
    # A lone surrogate (a non-UTF-8 byte decoded with surrogateescape) has no UTF-8 form; it
    # must be escaped before it reaches a table, and nothing is written.
    frame = pd.DataFrame({"file": ["ok.png", "bad\udcff.png"]})
    with pytest.raises(ValueError, match=r"t\.csv: column 'file', row 2 .*'bad\\udcff\.png'"):
        write_csv(tmp_path / "t.csv", frame)
    assert list(tmp_path.iterdir()) == []


def test_write_or_check_writes_then_says_current_or_out_of_date(tmp_path, capsys):
    path = tmp_path / "generated.json"
    assert write_or_check(path, "{}\n", check=True, remedy="run make x") == 1  # missing
    assert write_or_check(path, "{}\n", check=False, remedy="run make x") == 0
    assert path.read_text() == "{}\n"
    assert write_or_check(path, "{}\n", check=True, remedy="run make x") == 0
    assert write_or_check(path, "[]\n", check=True, remedy="run make x") == 1
    assert path.read_text() == "{}\n"  # a check never writes
    assert capsys.readouterr().out.splitlines()[-1] == f"{path} is out of date: run make x"
