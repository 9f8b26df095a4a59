"""What is on disk under a source root: every entry, hidden ones included, found by a walk that
never follows a symbolic link. Adapters list their inputs from it, curation checks its
accounting against it, and its text (names, kinds, sizes, modification times) is the input that
reruns curation when anything under a root changes."""

from __future__ import annotations

import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from cxr.io import atomic_open


@dataclass(frozen=True)
class Entry:
    """One entry under a source root. Regular folders are walked into and not listed themselves;
    hidden folders are listed as one entry and not walked into (their files are not inputs)."""

    path: str  # relative to the root, '/'-separated; bytes that are not UTF-8 shown as \xNN
    kind: str  # "file", "folder" (hidden only), "link", "special" or "unreadable" (a folder)
    size: int = 0
    mtime_ns: int = 0
    utf8: bool = True  # False when the name (or a folder above it) is not valid UTF-8
    detail: str = ""  # for "special": what it is; for "unreadable": the OS's message

    @property
    def hidden(self) -> bool:
        return self.path.rsplit("/", 1)[-1].startswith(".")


def walk_root(root: str | os.PathLike) -> list[Entry]:
    """Every entry under `root`, in the order of their path components (sorted by name)."""
    entries: list[Entry] = []
    _walk(os.fspath(root), "", "", True, entries)
    return entries


def _walk(folder: str, shown: str, raw: str, utf8: bool, entries: list[Entry]) -> None:
    with os.scandir(os.path.join(folder, raw) if raw else folder) as items:
        children = sorted(items, key=lambda item: item.name)
    for item in children:
        name_utf8 = utf8 and _is_utf8(item.name)
        path = f"{shown}/{_display(item.name)}" if shown else _display(item.name)
        info = item.stat(follow_symlinks=False)
        mode = info.st_mode
        common = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "utf8": name_utf8}
        if stat.S_ISLNK(mode):
            entries.append(Entry(path, "link", **common))
        elif stat.S_ISDIR(mode) and item.name.startswith("."):
            entries.append(Entry(path, "folder", **common))
        elif stat.S_ISDIR(mode):
            child_raw = os.path.join(raw, item.name) if raw else item.name
            try:
                _walk(folder, path, child_raw, name_utf8, entries)
            except OSError as exc:
                entries.append(Entry(path, "unreadable", **common, detail=exc.strerror or ""))
        elif stat.S_ISREG(mode):
            entries.append(Entry(path, "file", **common))
        else:
            entries.append(Entry(path, "special", **common, detail=_special_kind(mode)))


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir hands undecodable bytes over as surrogates
        return False
    return True


def _display(name: str) -> str:
    """The name as text: valid UTF-8 as it is, other bytes as \\xNN (e.g. 'caf\\xe9.png')."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _special_kind(mode: int) -> str:
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "not a file or folder")


def normalise_name(relative: str) -> str:
    """The name a file is matched on: each part stripped of surrounding spaces and in Unicode
    NFC, '.' parts and empty parts dropped ('./images//x.png ' -> 'images/x.png')."""
    parts = (unicodedata.normalize("NFC", part.strip()) for part in relative.split("/"))
    return "/".join(part for part in parts if part not in ("", "."))


def is_own(path: str, own: list[str]) -> bool:
    """Whether the entry `path` (relative to its root) is one of a source's own files (the
    adapter's own_files), or under one of them that names a folder (ends in "/")."""
    name = normalise_name(path)
    for item in own:
        base = normalise_name(item)
        if name == base or (item.endswith("/") and name.startswith(base + "/")):
            return True
    return False


def entry_reason(root: str | os.PathLike, entry: Entry) -> tuple[str, str]:
    """(reason, detail) an entry cannot be an input whatever its source's kind, or ('', '')
    for a regular file or a link to one inside the root (those the adapter judges)."""
    if not entry.utf8:
        return "file name not UTF-8", (
            f"'{entry.path}', bytes that are not UTF-8 shown as \\xNN (from another system?); "
            "rename it in UTF-8 to use it"
        )
    if entry.hidden:
        if entry.kind == "folder":
            return "hidden folder", "not walked into: its files are not inputs"
        return "hidden file", ""
    if entry.kind == "unreadable":
        return "unreadable", f"folder: {entry.detail}"
    if entry.kind == "special":
        return "not a regular file", entry.detail
    if entry.kind == "link":
        root_real = os.path.realpath(root)
        target = os.path.realpath(os.path.join(root, entry.path))
        if not Path(target).is_relative_to(root_real):
            return "path outside data root", "a link leaving the root, not followed"
        if os.path.isdir(target):
            return "not a regular file", "a link to a folder, not followed"
    return "", ""


def listing_text(root: str | os.PathLike) -> str:
    """Path, kind, size and modification time of every entry under `root`, one per line
    ('missing' when there is no root): it changes whenever anything curation reads changes."""
    lines = [f"# {os.fspath(root)}", "path\tkind\tsize\tmtime_ns"]
    try:
        entries = walk_root(root)
    except OSError as exc:
        return "\n".join([*lines, f"# unreadable: {exc.strerror}", ""])
    for entry in entries:
        # A hidden folder is one entry whatever it holds: git touching .git reruns nothing.
        size, mtime = ("-", "-") if entry.kind == "folder" else (entry.size, entry.mtime_ns)
        lines.append(f"{_escape(entry.path)}\t{entry.kind}\t{size}\t{mtime}")
    return "\n".join([*lines, ""])


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def write_listing(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Write `root`'s listing to `path` (atomically)."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(listing_text(root))


def refresh_listing(root: str | os.PathLike, path: str | os.PathLike) -> bool:
    """Rewrite an existing listing when what is under `root` changed (else leave its time
    alone, so Snakemake sees curation as up to date); True when rewritten."""
    path = Path(path)
    if not path.is_file():
        return False  # not made yet: rule list_sources writes it after the source exists
    text = listing_text(root)
    if path.read_text(encoding="utf-8") == text:
        return False
    write_listing(root, path)
    return True


def refresh_listings(roots: dict[str, str], pattern: str) -> list[str]:
    """refresh_listing for each source's root, its listing at `pattern` ({source} filled in);
    returns the listings rewritten."""
    listings = {name: pattern.format(source=name) for name in roots}
    return [listings[name] for name, root in roots.items() if refresh_listing(root, listings[name])]
