"""Which job made each file of a run: the rule and script, the commit, the inputs and outputs
with their SHA-256, and the settings (params) it ran with.

Every `script:` entry point calls `record_job` after its function has succeeded, which writes
one JSON record per job under `results/provenance/jobs/`. Snakemake keeps similar metadata
(`.snakemake/metadata/`), but in an undocumented format without the script or the param
values, so the workflow keeps its own. `collect` reads the records back, keeps those whose
outputs still have the recorded bytes, and indexes them by output path: that is
`results/provenance.json`, which the report and the run crate read."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cxr.io import read_json, sha256_file, write_json

log = logging.getLogger(__name__)

JOBS = Path("results/provenance/jobs")
# Where `git archive` writes the commit (the `export-subst` attribute in .gitattributes), so
# that a release archive, which has no .git, still names its commit.
ARCHIVED_COMMIT = Path(__file__).with_name("COMMIT")
# Snakemake writes this into a directory() output after its job: not part of what it made.
SNAKEMAKE_MARKERS = {".snakemake_timestamp"}
SHORT = 12  # hex digits of a SHA-256 shown in the report: enough to tell files apart
# Close enough to the job's start: entry points import this module first thing.
STARTED = dt.datetime.now(dt.UTC)


def git_commit(repo_dir: Path | None) -> dict:
    """The workflow's commit and whether its tracked files differ from it ({"commit": None}
    where there is no git checkout and no archived commit, e.g. a copied folder)."""
    if repo_dir is not None:
        try:
            commit = _git(repo_dir, "rev-parse", "HEAD")
            dirty = bool(_git(repo_dir, "status", "--porcelain", "--untracked-files=no"))
            return {"commit": commit, "dirty": dirty}
        except (OSError, subprocess.SubprocessError) as error:
            log.info("no git checkout at %s (%s): reading the archived commit", repo_dir, error)
    archived = ARCHIVED_COMMIT.read_text().strip() if ARCHIVED_COMMIT.exists() else ""
    if len(archived) == 40 and all(c in "0123456789abcdef" for c in archived):
        # An archive cannot say whether its files were changed after unpacking.
        return {"commit": archived, "dirty": None}
    return {"commit": None, "dirty": None}


def _git(repo_dir: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo_dir), *args], capture_output=True, text=True, timeout=20, check=True
    )
    return result.stdout.strip()


def commit_text(commit: dict) -> str:
    """One line for a person: the hash, and whether the tree had uncommitted changes."""
    if not commit.get("commit"):
        return "unknown"
    return commit["commit"] + (" + uncommitted changes" if commit.get("dirty") else "")


def fingerprint(path: str | os.PathLike) -> dict:
    """A file's SHA-256; for a folder (a source's image root), the SHA-256 of its listing
    (relative paths and sizes), which changes when a file is added, removed or resized,
    without reading thousands of images once per job."""
    path = Path(path)
    if path.is_dir():
        listing = sorted(
            (p.relative_to(path).as_posix(), p.stat().st_size)
            for p in path.rglob("*")
            if p.is_file() and p.name not in SNAKEMAKE_MARKERS
        )
        digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        return {"path": str(path), "kind": "folder", "files": len(listing), "sha256": digest}
    if not path.exists():
        return {"path": str(path), "kind": "missing", "sha256": None}
    return {
        "path": str(path),
        "kind": "file",
        "bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def job_id(rule: str, wildcards: Mapping[str, str]) -> str:
    """`rule` or `rule[key=value,...]`: unique within a run, as Snakemake's jobs are."""
    if not wildcards:
        return rule
    return f"{rule}[{','.join(f'{k}={v}' for k, v in sorted(wildcards.items()))}]"


def record_path(rule: str, wildcards: Mapping[str, str], jobs_dir: Path = JOBS) -> Path:
    name = ",".join(f"{k}={v}" for k, v in sorted(wildcards.items())) or "job"
    return jobs_dir / rule / (name.replace("/", "_") + ".json")


def _paths(files: Any) -> list[str]:
    """Snakemake's named input/output lists, flattened to paths in order."""
    if isinstance(files, (str, os.PathLike)):
        return [str(files)]
    out: list[str] = []
    for item in files:
        out.extend(_paths(item))
    return out


def plain(value: Any) -> Any:
    """Snakemake's config and params as JSON values (it gives Namedlists, tuples and the
    like): what a job record stores and the report's config YAML shows."""
    return json.loads(json.dumps(value, default=str))


def job_record(
    *,
    rule: str,
    script: str | os.PathLike,
    wildcards: Mapping[str, str],
    inputs: Iterable,
    outputs: Iterable,
    params: Mapping[str, Any],
    repo_dir: Path | None,
    started: dt.datetime = STARTED,
) -> dict:
    script = Path(script).resolve()
    if repo_dir is not None and script.is_relative_to(repo_dir.resolve()):
        script_name = script.relative_to(repo_dir.resolve()).as_posix()
    else:
        script_name = script.name
    return {
        "job": job_id(rule, wildcards),
        "rule": rule,
        "script": script_name,
        "wildcards": dict(sorted(wildcards.items())),
        **git_commit(repo_dir),
        "started": started.isoformat(timespec="seconds"),
        "ended": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "inputs": [fingerprint(p) for p in dict.fromkeys(_paths(inputs))],
        "outputs": [fingerprint(p) for p in dict.fromkeys(_paths(outputs))],
        "params": plain(dict(params)),
    }


def record_job(sm: Any, script: str | os.PathLike, jobs_dir: Path = JOBS) -> Path:
    """Write the record of the job a `script:` entry point ran (call it after success)."""
    script = Path(script)
    wildcards = {k: str(v) for k, v in sm.wildcards.items()}
    record = job_record(
        rule=sm.rule,
        script=script,
        wildcards=wildcards,
        inputs=list(sm.input),
        outputs=list(sm.output),
        params=dict(sm.params.items()),
        repo_dir=script.resolve().parents[1],
    )
    path = record_path(sm.rule, wildcards, jobs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return path


def is_current(record: Mapping) -> bool:
    """Whether every output of a job record still has the bytes the job wrote."""
    return all(fingerprint(o["path"])["sha256"] == o["sha256"] for o in record["outputs"])


def collect(files: Iterable[str], jobs_dir: Path = JOBS) -> dict:
    """`results/provenance.json`: for each of `files`, the job that made it and, through its
    inputs, every job upstream of it. A record counts only while its outputs still have the
    bytes it recorded (a file rewritten by a later job, or by hand, has no provenance
    rather than a wrong one)."""
    made_by: dict[str, dict] = {}
    for path in sorted(Path(jobs_dir).rglob("*.json")):
        record = read_json(path)
        for out in record["outputs"]:
            made_by[out["path"]] = record

    jobs: dict[str, dict] = {}
    artifacts: dict[str, str | None] = {}
    stale: list[str] = []

    def trace(path: str) -> str | None:
        record = made_by.get(path)
        if record is None:
            return None
        if record["job"] not in jobs:
            if not is_current(record):
                stale.append(record["job"])
                made_by.pop(path)
                return None
            jobs[record["job"]] = record
            for item in record["inputs"]:
                trace(item["path"])
        return record["job"]

    for path in files:
        artifacts[str(path)] = trace(str(path))
    return {
        "artifacts": dict(sorted(artifacts.items())),
        "jobs": dict(sorted(jobs.items())),
        "stale": sorted(set(stale)),
    }
