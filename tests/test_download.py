"""cxr.download against a local HTTP server (127.0.0.1) and git repositories made here."""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from cxr import download
from cxr.download import extract_archive, fetch_git, fetch_url
from cxr.errors import DownloadError

PAYLOAD = b"chest x-ray weights " * 100


@pytest.fixture
def server(http_server):
    """(base url, served folder, request paths) of the shared 127.0.0.1 server (conftest)."""
    return http_server


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name or ".old" in p.name)


# ---------------------------------------------------------------------------- fetch_url


def test_fetch_url_downloads_verifies_and_caches(server, tmp_path, caplog):
    base, root, requests = server
    (root / "w.h5").write_bytes(PAYLOAD)
    dest = tmp_path / "res" / "w.h5"
    sha, md5 = hashlib.sha256(PAYLOAD).hexdigest(), hashlib.md5(PAYLOAD).hexdigest()

    with caplog.at_level(logging.INFO, logger="cxr.download"):
        assert fetch_url(f"{base}/w.h5", dest, sha256=sha, md5=md5.upper()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert requests == ["/w.h5"]
    assert "100%" in caplog.text
    assert _leftovers(dest.parent) == []

    fetch_url(f"{base}/w.h5", dest, sha256=sha)  # cached: no second request
    assert requests == ["/w.h5"]


def test_fetch_url_replaces_a_stale_file(server, tmp_path):
    base, root, requests = server
    (root / "w.h5").write_bytes(PAYLOAD)
    dest = tmp_path / "w.h5"
    dest.write_bytes(b"truncated")
    fetch_url(f"{base}/w.h5", dest, md5=hashlib.md5(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert len(requests) == 1


def test_fetch_url_checksum_mismatch_keeps_nothing(server, tmp_path):
    base, root, _ = server
    (root / "w.h5").write_bytes(PAYLOAD)
    dest = tmp_path / "w.h5"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        fetch_url(f"{base}/w.h5", dest, sha256=wrong)
    message = str(err.value)
    assert f"{base}/w.h5" in message
    assert wrong in message
    assert hashlib.sha256(PAYLOAD).hexdigest() in message
    assert str(dest) in message
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_fetch_url_404_names_url_and_login_node(server, tmp_path):
    base, _, requests = server
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch_url(f"{base}/missing.h5", tmp_path / "m.h5", retries=3)
    assert f"{base}/missing.h5" in str(err.value)
    assert "login node" in str(err.value)
    assert requests == ["/missing.h5"]  # a 404 is not retried
    assert not (tmp_path / "m.h5").exists()


def test_fetch_url_connection_refused_retries_then_raises(tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(download.time, "sleep", waits.append)
    # Bound but not listening: connecting is refused, and no one else can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/w.h5"
        with pytest.raises(DownloadError) as err:
            fetch_url(url, tmp_path / "w.h5", retries=2, timeout=5)
    assert url in str(err.value)
    assert "no internet" in str(err.value)
    assert "Connection" in str(err.value)
    assert waits == [1, 2]


def test_fetch_url_file_scheme_and_bad_scheme(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = fetch_url(src.as_uri(), tmp_path / "out" / "dst.bin")
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="scheme 'ftp'"):
        fetch_url("ftp://127.0.0.1/w.h5", tmp_path / "x")


# ---------------------------------------------------------------------------- fetch_git


def _git(*args, cwd):
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def two_commits(tmp_path):
    """A repository whose data.txt reads 'v1' at the first commit and 'v2' at the second."""
    repo = tmp_path / "origin"
    repo.mkdir()
    _git("init", "-q", "-b", "main", cwd=repo)
    shas = []
    for text in ("v1", "v2"):
        (repo / "data.txt").write_text(text)
        _git("add", "data.txt", cwd=repo)
        _git("commit", "-q", "-m", text, cwd=repo)
        shas.append(_git("rev-parse", "HEAD", cwd=repo))
    return repo, shas


def test_fetch_git_pins_first_commit_and_is_idempotent(two_commits, tmp_path, monkeypatch):
    repo, (first, second) = two_commits
    dest = tmp_path / "res" / "dataset"
    assert fetch_git(str(repo), first[:10], dest) == dest
    assert (dest / "data.txt").read_text() == "v1"
    assert _git("rev-parse", "HEAD", cwd=dest) == first
    assert _leftovers(dest.parent) == []

    calls = []
    real = download._git
    monkeypatch.setattr(download, "_git", lambda args, **kw: calls.append(args) or real(args, **kw))
    fetch_git(str(repo), first.upper(), dest)
    assert [args for args in calls if args[0] != "rev-parse"] == []  # no clone, no checkout

    monkeypatch.undo()
    fetch_git(str(repo), second, dest)  # a new pin replaces the old checkout
    assert (dest / "data.txt").read_text() == "v2"
    assert _leftovers(dest.parent) == []


@pytest.mark.parametrize("commit", ["deadbeef", "d" * 40])
def test_fetch_git_unknown_commit_raises(two_commits, tmp_path, commit):
    repo, _ = two_commits
    dest = tmp_path / "dataset"
    with pytest.raises(DownloadError, match=commit):
        fetch_git(str(repo), commit, dest)
    assert not dest.exists()
    assert _leftovers(tmp_path) == []


def test_fetch_git_refuses_branch_names_and_unreachable_repos(tmp_path):
    with pytest.raises(DownloadError, match="not a commit hash"):
        fetch_git("https://127.0.0.1/x.git", "main", tmp_path / "d")
    with pytest.raises(DownloadError, match="login node") as err:
        fetch_git(str(tmp_path / "no-such-repo"), "abcdef0", tmp_path / "d")
    assert "no-such-repo" in str(err.value)
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------- extract_archive


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            archive.addfile(info)
    return path


def test_extract_zip_and_tar_with_members_under(tmp_path):
    members = {"repo-abc/images/a.png": b"A", "repo-abc/images/sub/b.png": b"B", "repo-abc/x": b"X"}
    for archive in (_zip(tmp_path / "a.zip", members), _tar(tmp_path / "a.tgz", members)):
        dest = tmp_path / f"out-{archive.suffix}"
        extract_archive(archive, dest, members_under="repo-abc/images/")
        files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
        assert files == ["a.png", "sub/b.png"]
        assert (dest / "sub" / "b.png").read_bytes() == b"B"
        extract_archive(archive, dest)  # replaces the previous extraction
        assert (dest / "repo-abc" / "x").read_bytes() == b"X"
        assert not (dest / "a.png").exists()
    assert _leftovers(tmp_path) == []
    with pytest.raises(DownloadError, match="no members under 'nope'"):
        extract_archive(tmp_path / "a.zip", tmp_path / "none", members_under="nope")


@pytest.mark.parametrize("make", [_zip, _tar])
def test_extract_refuses_path_traversal(tmp_path, make):
    archive = make(tmp_path / "evil.archive", {"ok.txt": b"fine", "../evil": b"pwned"})
    dest = tmp_path / "sub" / "out"
    with pytest.raises(DownloadError, match=r"'\.\./evil'"):
        extract_archive(archive, dest)
    assert not dest.exists()
    assert not (tmp_path / "sub" / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert _leftovers(tmp_path / "sub") == []


def test_extract_refuses_links_and_non_archives(tmp_path):
    archive = _tar(tmp_path / "l.tgz", {"ok.txt": b"fine"}, links={"passwd": "/etc/passwd"})
    with pytest.raises(DownloadError, match="'passwd' is a link"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        extract_archive(tmp_path / "plain.txt", tmp_path / "out")
