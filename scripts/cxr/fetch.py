"""Fetch one configured source at its pinned version into resources/ (a local rule: compute
nodes often have no internet)."""

from __future__ import annotations

import logging
from pathlib import Path

from cxr.download import extract_archive, fetch_git, fetch_url
from cxr.errors import ConfigError
from cxr.io import sha256_file

log = logging.getLogger(__name__)


def fetch_source(name: str, spec: dict) -> Path:
    """Clone a git source at its commit, or download, verify and unpack an archive source."""
    download = spec.get("download") or {}
    if "git" in download:
        if not download.get("commit"):
            raise ConfigError(f"sources.{name}.download.commit is required to pin a git source")
        return fetch_git(download["git"], download["commit"], Path(spec["root"]))
    if "url" in download:
        dest = Path(download.get("dest") or spec["root"])
        archive = dest.with_name(dest.name + ".archive")
        expected = download.get("sha256")
        fetch_url(download["url"], archive, sha256=expected)
        if not expected:
            log.warning(
                "sources.%s.download.sha256 is not pinned; this download's sha256 is %s: "
                "put it in config.yaml so later downloads are verified",
                name,
                sha256_file(archive),
            )
        extract_archive(archive, dest, members_under=download.get("archive_root"))
        return dest
    raise ConfigError(f"sources.{name}.download needs either git+commit or url")
