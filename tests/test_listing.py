"""The walk of a source root (what curation accounts against) and its listing (what reruns
curation when anything under a root changes)."""

from __future__ import annotations

import os

from cxr.listing import listing_text, normalise_name, refresh_listing, walk_root, write_listing


def test_walk_lists_every_entry_and_follows_no_link(tmp_path):
    root = tmp_path / "root"
    (root / "images/sub").mkdir(parents=True)
    (root / "images/sub/b.png").write_bytes(b"bb")
    (root / "images/a.png").write_bytes(b"a")
    (root / ".cache/deep").mkdir(parents=True)
    (root / ".cache/deep/x.png").write_bytes(b"x")
    (root / ".DS_Store").write_bytes(b"")
    os.mkfifo(root / "pipe")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret.png").write_bytes(b"s")
    (root / "out").symlink_to(tmp_path / "outside")
    entries = {e.path: e for e in walk_root(root)}
    kinds = {path: entry.kind for path, entry in entries.items()}
    assert list(kinds.items()) == [
        (".DS_Store", "file"),
        (".cache", "folder"),  # hidden: one entry, not walked into
        ("images/a.png", "file"),
        ("images/sub/b.png", "file"),
        ("out", "link"),  # a link to a folder outside: listed, not followed
        ("pipe", "special"),
    ]
    assert entries["images/sub/b.png"].size == 2
    assert entries[".DS_Store"].hidden and entries[".cache"].hidden
    assert entries["pipe"].detail == "a FIFO"


def test_names_normalise_once_for_matching():
    nfd = "images/ro\u0308ntgen.png"
    assert normalise_name(nfd) == "images/r\u00f6ntgen.png"
    assert normalise_name("./images//x.png ") == "images/x.png"
    assert normalise_name("images/./ sub /x.png") == "images/sub/x.png"
    assert normalise_name("images/../x.png") == "images/../x.png"  # '..' is refused later


def test_a_listing_is_rewritten_only_when_something_under_the_root_changed(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "metadata.csv").write_text("patientid,view\n1,PA\n")
    listing = tmp_path / "listing/covid.tsv"
    assert not refresh_listing(root, listing)  # not made yet: the rule writes it
    write_listing(root, listing)
    assert "metadata.csv\tfile\t" in listing.read_text()
    os.utime(listing, ns=(1, 1))
    assert not refresh_listing(root, listing)
    assert listing.stat().st_mtime_ns == 1  # left alone: curation stays up to date
    metadata = root / "metadata.csv"
    before = metadata.stat()
    metadata.write_text("patientid,view\n1,AP\n")  # the same size, edited in place
    os.utime(metadata, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    assert refresh_listing(root, listing) and listing.read_text() == listing_text(root)
    (root / ".git").mkdir()
    assert refresh_listing(root, listing) and ".git\tfolder\t-\t-" in listing.read_text()
    (root / ".git/index").write_bytes(b"git at work")  # not an input: nothing to rerun
    assert not refresh_listing(root, listing)
    (root / "images/new").mkdir()
    (root / "images/new/x.png").write_bytes(b"x")
    assert refresh_listing(root, listing)
    assert "images/new/x.png\tfile\t1\t" in listing.read_text()


def test_a_listing_of_a_missing_root_says_so(tmp_path):
    text = listing_text(tmp_path / "nowhere")
    assert "# unreadable: No such file or directory" in text
