"""Fetch inputs (files, pinned git commits, archives) into `resources/` with checksums.

Cluster compute nodes often have no internet, so these run only in local Snakemake rules on
a login node; every result appears under its final name only once complete and verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from cxr.errors import DownloadError
from cxr.io import atomic_open

log = logging.getLogger(__name__)

SCHEMES = ("http", "https", "file")
CHUNK = 1 << 20
PROGRESS_EVERY_BYTES = 50 << 20  # when the server sends no Content-Length
OFFLINE_HINT = (
    "Compute nodes often have no internet: run the download rules (Snakemake localrules) on a "
    "login node first, e.g. `snakemake --cores 1 --until <fetch rule>`, or copy the file to {dest}."
)


def _offline_hint(dest: Path) -> str:
    return OFFLINE_HINT.format(dest=dest)


# --------------------------------------------------------------------------------------------
# Files over HTTP(S)
# --------------------------------------------------------------------------------------------


def _expected(sha256: str | None, md5: str | None) -> dict[str, str]:
    return {name: value.lower() for name, value in (("sha256", sha256), ("md5", md5)) if value}


def _new_hashers(names) -> dict[str, hashlib._Hash]:
    # md5 only checks integrity against a published digest; usedforsecurity keeps FIPS hosts happy.
    return {name: hashlib.new(name, usedforsecurity=False) for name in names}


def _file_digests(path: Path, names) -> dict[str, str]:
    hashers = _new_hashers(names)
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def _mismatches(actual: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [
        f"{name} expected {value}, got {actual[name]}"
        for name, value in expected.items()
        if actual[name] != value
    ]


def _stream(response, handle: IO[bytes], url: str, hashers: dict) -> int:
    """Copy the response into `handle`, hashing on the way and logging progress."""
    total = response.headers.get("Content-Length")
    total = int(total) if total and total.isdigit() else None
    done = 0
    next_log = total // 10 if total else PROGRESS_EVERY_BYTES
    while block := response.read(CHUNK):
        handle.write(block)
        for hasher in hashers.values():
            hasher.update(block)
        done += len(block)
        if next_log and done >= next_log:
            if total:
                log.info(
                    "%s: %d%% (%.1f of %.1f MB)", url, 100 * done // total, done / 1e6, total / 1e6
                )
                next_log = (100 * done // total // 10 + 1) * total // 10
            else:
                log.info("%s: %.1f MB", url, done / 1e6)
                next_log = done + PROGRESS_EVERY_BYTES
    if total is not None and done != total:
        # http.client does not always notice a connection closed early.
        raise http.client.IncompleteRead(b"", total - done)
    return done


def fetch_url(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60,
    retries: int = 2,
) -> Path:
    """Download `url` to `dest` unless a file with the expected checksum is already there.

    Streams to a `.part` file beside `dest` and renames it only after the checksum(s) match.
    Without any checksum an existing `dest` is taken as cached (there is nothing to check).
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        raise DownloadError(f"cannot download {url!r}: scheme {scheme!r} is not one of {SCHEMES}")
    expected = _expected(sha256, md5)

    if dest.is_file():
        if not expected:
            log.info("%s exists and no checksum is pinned: using it as is", dest)
            return dest
        if not _mismatches(_file_digests(dest, expected), expected):
            log.info("%s is cached and its checksum matches", dest)
            return dest
        log.warning("%s exists but its checksum does not match: downloading it again", dest)
        dest.unlink()

    for attempt in range(max(retries, 0) + 1):
        try:
            return _download_once(url, dest, expected, timeout)
        except urllib.error.HTTPError as err:
            # 4xx will not fix itself; 5xx may be a transient server problem.
            problem = f"HTTP {err.code} {err.reason}"
            if err.code < 500:
                break
        except (OSError, http.client.HTTPException) as err:
            reason = err.reason if isinstance(err, urllib.error.URLError) else err
            problem = f"{type(reason).__name__}: {reason}"
        if attempt < retries:
            wait = min(2**attempt, 30)
            log.warning(
                "%s failed (%s); retry %d of %d in %d s", url, problem, attempt + 1, retries, wait
            )
            time.sleep(wait)
    raise DownloadError(
        f"could not download {url} to {dest} ({problem}, {attempt + 1} attempt(s)). "
        f"This node may have no internet. {_offline_hint(dest)}"
    )


def _download_once(url: str, dest: Path, expected: dict[str, str], timeout: float) -> Path:
    hashers = _new_hashers(expected)
    log.info("downloading %s -> %s", url, dest)
    # atomic_open writes `.<name>.part<suffix>` beside dest and deletes it if anything raises.
    with (
        urllib.request.urlopen(url, timeout=timeout) as response,
        atomic_open(dest, "wb") as handle,
    ):
        size = _stream(response, handle, url, hashers)
        bad = _mismatches({n: h.hexdigest() for n, h in hashers.items()}, expected)
        if bad:
            raise DownloadError(
                f"checksum mismatch for {url} (file {dest}, not kept): {'; '.join(bad)}. "
                "The download is corrupt or the file changed upstream: retry, and if it fails "
                "again check the source before updating the pinned checksum."
            )
    log.info("downloaded %s (%.1f MB) -> %s", url, size / 1e6, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Pinned git commits
# --------------------------------------------------------------------------------------------

COMMIT_RE = re.compile(r"[0-9a-f]{7,40}")


def _git(args: list[str], *, cwd: Path | None = None, what: str) -> str:
    # Never wait for a password prompt on a login node: fail with the message instead.
    env = {"GIT_SSH_COMMAND": "ssh -o BatchMode=yes", **os.environ}
    env |= {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as err:
        raise DownloadError(f"{what}: `git` is not installed or not on PATH") from err
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise DownloadError(f"{what}: `git {' '.join(args)}` failed ({done.returncode}):\n{tail}")
    return done.stdout.strip()


def _checkout_head(path: Path) -> str | None:
    """HEAD of the repository whose top level is `path`, or None if it is not one."""
    if not (path / ".git").exists():
        return None
    try:
        return _git(["rev-parse", "HEAD"], cwd=path, what=f"reading {path}")
    except DownloadError:
        return None


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename `tmp` onto `dest`, removing an older `dest` only after the new one is complete."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    try:
        os.replace(tmp, dest)
    except OSError:
        if old is not None:
            os.replace(old / dest.name, dest)
        raise
    if old is not None:
        shutil.rmtree(old)


@contextlib.contextmanager
def _temp_dir_beside(dest: Path) -> Iterator[Path]:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_git(repo_url: str, commit: str, dest: Path) -> Path:
    """Clone `repo_url` into `dest` checked out at the pinned `commit` (full or abbreviated).

    A `dest` already at that commit is left alone; one at another commit is replaced.
    """
    dest = Path(dest)
    commit = commit.strip().lower()
    if not COMMIT_RE.fullmatch(commit):
        raise DownloadError(
            f"cannot fetch {repo_url}: {commit!r} is not a commit hash (7-40 hex digits); "
            "pin a commit, not a branch or tag, so the data cannot change under you"
        )
    head = _checkout_head(dest)
    if head is not None and head.startswith(commit):
        log.info("%s is already checked out at %s", dest, head)
        return dest
    occupied = dest.is_file() or (dest.is_dir() and any(dest.iterdir()))
    if occupied and head is None:
        raise DownloadError(
            f"cannot clone {repo_url} into {dest}: it exists and is not a git checkout; "
            "move it away or delete it, then rerun"
        )

    what = f"fetching {repo_url} at {commit}"
    with _temp_dir_beside(dest) as tmp:
        work = tmp / "repo"
        log.info("cloning %s at %s -> %s", repo_url, commit, dest)
        try:
            # Blobless: history without old file contents, which keeps big data repos small.
            _git(
                ["clone", "--quiet", "--filter=blob:none", "--no-checkout", repo_url, str(work)],
                what=what,
            )
        except DownloadError as err:
            raise DownloadError(
                f"{err}\nThis node may have no internet. {_offline_hint(dest)}"
            ) from None
        checkout = ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit]
        try:
            _git(checkout, cwd=work, what=what)
        except DownloadError:
            if len(commit) != 40:
                raise
            # A full hash may be on no branch or tag; hosts such as GitHub serve it by name.
            _git(["fetch", "--quiet", "--filter=blob:none", "origin", commit], cwd=work, what=what)
            _git(checkout, cwd=work, what=what)
        head = _git(["rev-parse", "HEAD"], cwd=work, what=what)
        if not head.startswith(commit):
            raise DownloadError(f"{what}: checked out {head}, which does not start with {commit}")
        _swap_into_place(work, dest)
    log.info("checked out %s at %s -> %s", repo_url, head, dest)
    return dest


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------

# (member name, kind: "file" | "dir" | "other", opener for file contents)
Member = tuple[str, str, Callable[[], IO[bytes]] | None]


def _zip_members(archive: zipfile.ZipFile) -> Iterator[Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        kind = "other" if stat.S_ISLNK(mode) else "dir" if info.is_dir() else "file"
        yield info.filename, kind, (lambda info=info: archive.open(info))


def _tar_members(archive: tarfile.TarFile) -> Iterator[Member]:
    for info in archive.getmembers():
        kind = "file" if info.isreg() else "dir" if info.isdir() else "other"
        yield info.name, kind, (lambda info=info: archive.extractfile(info))


def _relative_target(name: str, under: PurePosixPath | None) -> PurePosixPath | None:
    """Where a member goes relative to dest; None if it is outside `members_under`."""
    path = PurePosixPath(name)
    if under is not None:
        if path == under or under not in path.parents:
            return None
        path = path.relative_to(under)
    return path


def extract_archive(archive: Path, dest: Path, *, members_under: str | None = None) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into `dest` (replacing it), refusing unsafe ones.

    With `members_under`, only that folder of the archive is extracted, its contents becoming
    the top of `dest`. Members that are links, devices, absolute or escape `dest` are refused.
    """
    archive, dest = Path(archive), Path(dest)
    under = PurePosixPath(members_under.strip("/")) if members_under else None
    if zipfile.is_zipfile(archive):
        opener, members = zipfile.ZipFile, _zip_members
    elif tarfile.is_tarfile(archive):
        opener, members = tarfile.open, _tar_members
    else:
        raise DownloadError(
            f"{archive} is neither a zip nor a tar archive; delete it and fetch it again"
        )

    # Hand-written rather than extractall: zipfile silently rewrites `../` names and we want to
    # refuse the archive, name the member, and re-root members below `members_under`.
    with opener(archive) as opened, _temp_dir_beside(dest) as tmp:
        root = (tmp / "out").resolve()
        root.mkdir()
        selected = []
        for name, kind, opener in members(opened):
            rel = _relative_target(name, under)
            if rel is None:
                continue
            target = (root / rel).resolve()
            unsafe = (
                rel.is_absolute()
                or ".." in rel.parts
                or re.match(r"^[A-Za-z]:", name)
                or (target != root and root not in target.parents)
            )
            if unsafe:
                raise DownloadError(
                    f"refusing to extract {archive}: member {name!r} would land outside {dest} "
                    "(path traversal); the archive is corrupt or malicious"
                )
            if kind == "other":
                raise DownloadError(
                    f"refusing to extract {archive}: member {name!r} is a link or special file, "
                    "which could point outside the extracted folder"
                )
            selected.append((target, kind, opener))
        if not selected:
            raise DownloadError(
                f"{archive} has no members under {members_under!r}: check the folder name "
                "(list the archive with `unzip -l` or `tar tf`)"
            )
        for target, kind, opener in selected:
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with opener() as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK)
        _swap_into_place(root, dest)
    log.info("extracted %d members of %s -> %s", len(selected), archive, dest)
    return dest
