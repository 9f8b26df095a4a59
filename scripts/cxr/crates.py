"""RO-Crates, built with ro-crate-py (`rocrate`): one of the workflow (the repository root's
ro-crate-metadata.json, Workflow RO-Crate 1.0, what WorkflowHub registers) and one of each
finished run (a Provenance Run Crate 0.5: the report, its numbers and provenance, with every
output linked to the job that made it), zipped so that the same run gives the same bytes.

runcrate, the Workflow Run Crate project's tool, converts CWL provenance only; its `report`
reads the run crate back in tests/test_crates.py, and roc-validator validates both crates."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from cxr.io import atomic_path, read_json
from cxr.provenance import is_current

# Workflow RO-Crate 1.0 and the Workflow Run Crate profiles 0.5 build on RO-Crate 1.1.
RO_CRATE_VERSION = "1.1"
BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"
WORKFLOW_TYPES = ["File", "SoftwareSourceCode", "ComputationalWorkflow"]
LICENSES = {"MIT": "https://spdx.org/licenses/MIT"}
PROFILES = {
    "workflow": ("https://w3id.org/workflowhub/workflow-ro-crate/1.0", "Workflow RO-Crate", "1.0"),
    "process": ("https://w3id.org/ro/wfrun/process/0.5", "Process Run Crate", "0.5"),
    "workflow_run": ("https://w3id.org/ro/wfrun/workflow/0.5", "Workflow Run Crate", "0.5"),
    "provenance": ("https://w3id.org/ro/wfrun/provenance/0.5", "Provenance Run Crate", "0.5"),
}
# What the repository's crate lists beside the Snakefile, each with why a reader wants it.
WORKFLOW_PARTS = {
    "README.md": "What the workflow does, how to run it, and what it found.",
    "docs/": "The manual, one page per topic (docs/README.md is its index).",
    "config.yaml": "The settings `snakemake` runs with by default (the embedded synthetic data).",
    "rules/": "The Snakemake rules, one file per stage, and the configuration schema.",
    "scripts/": "The rules' entry points and the Python package cxr they call.",
    "envs/": "Pinned conda environments of the rules (`--use-conda`).",
    "report/": "The Jinja2 templates of the HTML report.",
    "profiles/": "Snakemake profiles: local runs and a SLURM cluster.",
    "expected/": "The numbers a rerun must reproduce, with tolerances (scripts/verify.py).",
    "tests/": "The pytest suite (the command is in README.md).",
    "requirements.txt": "Pinned Python packages of the workflow (pip).",
    "CITATION.cff": "How to cite the workflow and the data and methods it builds on.",
    "LICENSE": "The workflow's licence.",
}
# The run crate's copy of a run: what a reviewer reads and what verify checks. Everything else
# a job read or wrote (models, shards, images) is named by path and SHA-256, not copied.
RUN_FILES = (
    "results/report.html",
    "results/provenance.json",
    "results/measured.json",
    "results/curated/flow.json",
    "results/curated/images.csv",
    "results/curated/exclusions.csv",
    "results/curated/annotations/summary.json",
    "results/audit/leakage.json",
    "results/protocols/comparison.json",
    "results/protocols/generalisation.json",
)
RUN_PATTERNS = (
    "results/*/splits/summary.json",
    "results/*/eval/summary.json",
    "results/*/eval/*/*.json",
)
# encodingFormat of the files the crates list (IANA media types; RO-Crate recommends one).
MEDIA_TYPES = {
    ".md": "text/markdown",
    ".yaml": "application/yaml",
    ".cff": "application/yaml",
    ".txt": "text/plain",
    ".json": "application/json",
    ".csv": "text/csv",
    ".html": "text/html",
    ".png": "image/png",
    "": "text/plain",
}
# A zip entry's time (the format's earliest): the bytes then depend on the contents only.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def citation(repo: Path) -> dict:
    return yaml.safe_load((repo / "CITATION.cff").read_text())


def _profile(crate: ROCrate, key: str) -> ContextEntity:
    uri, name, version = PROFILES[key]
    entity = crate.get(uri) or crate.add(
        ContextEntity(
            crate,
            uri,
            properties={"@type": ["CreativeWork", "Profile"], "name": name, "version": version},
        )
    )
    return entity


def _authors(crate: ROCrate, cff: Mapping) -> list[ContextEntity]:
    people = []
    for author in cff.get("authors", []):
        if "name" in author:
            name, kind = author["name"], "Organization"
        else:
            name, kind = (
                f"{author.get('given-names', '')} {author['family-names']}".strip(),
                "Person",
            )
        ident = author.get("orcid") or "#" + name.lower().replace(" ", "-")
        people.append(
            crate.add(ContextEntity(crate, ident, properties={"@type": kind, "name": name}))
        )
    return people


def _describe_workflow(
    crate: ROCrate, repo: Path, cff: Mapping, *, snakemake_version: str | None, steps: bool = False
) -> Any:
    """The Snakefile as the crate's main workflow, with its language, licence and authors."""
    workflow = crate.add_workflow(
        repo / "Snakefile",
        dest_path="Snakefile",
        main=True,
        lang="snakemake",
        lang_version=snakemake_version,
        properties={
            "name": cff["title"],
            "version": str(cff["version"]),
            # Provenance Run Crate: a workflow that lists its steps is also a HowTo.
            "@type": [*WORKFLOW_TYPES, "HowTo"] if steps else WORKFLOW_TYPES,
        },
    )
    workflow["license"] = LICENSES.get(cff["license"], cff["license"])
    workflow["encodingFormat"] = "text/plain"
    workflow["conformsTo"] = {"@id": BIOSCHEMAS_WORKFLOW}
    workflow["creator"] = _one(_authors(crate, cff))
    return workflow


def _one(values: list) -> Any:
    """A single value as itself, several as a list (RO-Crate's JSON-LD recommendation)."""
    return values[0] if len(values) == 1 else values


def _media_type(path: str) -> str:
    return MEDIA_TYPES.get(Path(path).suffix, "application/octet-stream")


def _root(crate: ROCrate, cff: Mapping, *, description: str, date: str) -> None:
    crate.name = cff["title"]
    crate.description = description
    crate.license = crate.add(
        ContextEntity(
            crate,
            LICENSES.get(cff["license"], cff["license"]),
            properties={
                "@type": "CreativeWork",
                "name": f"{cff['license']} License",
                "description": "The licence of the workflow's code (LICENSE); "
                "data sets keep their own.",
            },
        )
    )
    crate.root_dataset["datePublished"] = date
    crate.root_dataset["version"] = str(cff["version"])
    crate.root_dataset["keywords"] = list(cff.get("keywords", []))
    authors = _authors(crate, cff)
    crate.root_dataset["creator"] = _one(authors)
    crate.root_dataset["author"] = _one(authors)
    crate.root_dataset["publisher"] = authors[0]


def workflow_crate(repo: Path, *, snakemake_version: str | None = None) -> ROCrate:
    """The repository's own crate: its metadata file only, the files stay where they are."""
    cff = citation(repo)
    crate = ROCrate(gen_preview=False, version=RO_CRATE_VERSION)
    _root(
        crate,
        cff,
        date=str(cff["date-released"]),
        description=" ".join(cff["abstract"].split()),
    )
    _describe_workflow(crate, repo, cff, snakemake_version=snakemake_version)
    for part, what in WORKFLOW_PARTS.items():
        props = {"description": what}
        if not part.endswith("/"):
            props["encodingFormat"] = _media_type(part)
        if part == "README.md":
            props["about"] = {"@id": "./"}
        if part.endswith("/"):
            crate.add_dataset(repo / part, dest_path=part, properties=props)
        else:
            crate.add_file(repo / part, dest_path=part, properties=props)
    crate.root_dataset["conformsTo"] = _profile(crate, "workflow")
    return crate


def metadata_text(crate: ROCrate) -> str:
    """The crate's ro-crate-metadata.json, as rocrate writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        crate.metadata.write(tmp)
        return (Path(tmp) / crate.metadata.id).read_text()


# --- the run crate -------------------------------------------------------------------------


def run_files(root: Path = Path(".")) -> list[str]:
    """The files of a finished run that the run crate copies, in a fixed order."""
    found = [p for p in RUN_FILES if (root / p).exists()]
    for pattern in RUN_PATTERNS:
        found += sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))
    return list(dict.fromkeys(found))


def _file_entity(crate: ROCrate, item: Mapping, packed: Mapping[str, Path]) -> Any:
    """A job's input or output: the packed copy where the crate has one, otherwise a `#`
    reference with its path and SHA-256 (Workflow Run Crate's rule for files left out)."""
    path = item["path"]
    if path in packed:
        entity = crate.get(path)
        if entity is None:
            entity = crate.add_file(
                packed[path], dest_path=path, properties={"sha256": item["sha256"]}
            )
        return entity
    ident = "#" + path
    entity = crate.get(ident)
    if entity is None:
        kind = "Dataset" if item.get("kind") == "folder" else "File"
        props = {"@type": kind, "name": path, "alternateName": path}
        if item.get("sha256"):
            props["sha256"] = item["sha256"]
        if item.get("bytes") is not None:
            props["contentSize"] = str(item["bytes"])
        entity = crate.add(ContextEntity(crate, ident, properties=props))
    return entity


def run_crate(
    repo: Path,
    *,
    provenance: Mapping,
    jobs: Iterable[Mapping],
    files: Iterable[str],
    config_path: Path,
    snakemake_version: str | None = None,
    root: Path = Path("."),
) -> ROCrate:
    """A Provenance Run Crate of a finished run. `jobs` are the job records (cxr.provenance)
    of every job whose outputs still have their recorded bytes; `files` the run's files to copy."""
    cff = citation(repo)
    jobs = sorted(jobs, key=lambda r: (r["ended"], r["job"]))
    ended = max((r["ended"] for r in jobs), default=dt.datetime(2000, 1, 1).isoformat())
    crate = ROCrate(gen_preview=False, version=RO_CRATE_VERSION)
    # RO-Crate 1.1's context has no checksum term; later versions map sha256 to this IRI.
    crate.metadata.extra_terms["sha256"] = "http://schema.org/sha256"
    commit = provenance.get("workflow", {}).get("commit")
    _root(
        crate,
        cff,
        date=ended,
        description=f"A run of the cxr-repro workflow (commit {commit or 'unknown'}): its report, "
        "the numbers scripts/verify.py checks, the curated lists, the evaluations and the "
        "provenance of every job.",
    )
    workflow = _describe_workflow(crate, repo, cff, snakemake_version=snakemake_version, steps=True)
    packed = {f: root / f for f in files}
    packed["config.yaml"] = config_path

    engine = crate.add(
        ContextEntity(
            crate,
            "https://snakemake.github.io",
            properties={
                "@type": "SoftwareApplication",
                "name": "Snakemake",
                "version": snakemake_version or "unknown",
            },
        )
    )
    config_entity = crate.add_file(
        config_path,
        dest_path="config.yaml",
        properties={
            "description": "The run's resolved configuration: config.yaml, --config and "
            "the schema's defaults."
        },
    )
    config_param = crate.add_formal_parameter("config", "File", identifier="#param-config")
    config_param["workExample"] = config_entity
    report_param = crate.add_formal_parameter("report", "File", identifier="#param-report")
    workflow["input"] = [config_param]
    workflow["output"] = [report_param]

    tools: dict[str, Any] = {}
    steps: dict[str, Any] = {}
    control_actions, actions = [], []
    for record in jobs:
        rule = record["rule"]
        if rule not in tools:
            tools[rule] = crate.add(
                ContextEntity(
                    crate,
                    f"#rule-{rule}",
                    properties={
                        "@type": "SoftwareApplication",
                        "name": f"rule {rule}",
                        "description": f"Snakemake rule {rule}, script {record['script']}.",
                        "url": f"{record['script']}",
                        "softwareVersion": commit or "unknown",
                    },
                )
            )
            steps[rule] = crate.add(
                ContextEntity(
                    crate,
                    f"#step-{rule}",
                    properties={
                        "@type": "HowToStep",
                        "name": rule,
                        "workExample": tools[rule],
                    },
                )
            )
        objects = [_file_entity(crate, i, packed) for i in record["inputs"]]
        results = [_file_entity(crate, o, packed) for o in record["outputs"]]
        action = crate.add_action(
            tools[rule],
            identifier=f"#job-{record['job']}",
            object=_one(objects),
            result=_one(results),
            properties={
                "name": f"job {record['job']}",
                "startTime": record["started"],
                "endTime": record["ended"],
                "actionStatus": "http://schema.org/CompletedActionStatus",
                "description": "settings: " + json.dumps(record["params"], sort_keys=True)[:2000],
            },
        )
        actions.append(action)
        control_actions.append(
            crate.add(
                ContextEntity(
                    crate,
                    f"#control-{record['job']}",
                    properties={
                        "@type": "ControlAction",
                        "name": f"orchestrate {record['job']}",
                        "instrument": steps[rule],
                        "object": action,
                    },
                )
            )
        )
    workflow["hasPart"] = list(tools.values())
    workflow["step"] = list(steps.values())

    report = crate.get("results/report.html")
    run = crate.add_action(
        workflow,
        identifier="#run",
        object=[config_entity],
        result=report,
        properties={
            "name": f"Run of cxr-repro at commit {commit or 'unknown'}",
            "description": "snakemake's run of the workflow, from its configuration to the report.",
            "startTime": min((r["started"] for r in jobs), default=ended),
            "endTime": ended,
            "actionStatus": "http://schema.org/CompletedActionStatus",
        },
    )
    if report:
        report_param["workExample"] = report
        report["exampleOfWork"] = report_param
    crate.add(
        ContextEntity(
            crate,
            "#orchestrate",
            properties={
                "@type": "OrganizeAction",
                "name": "Snakemake's orchestration of the run",
                "instrument": engine,
                "result": run,
                "object": control_actions,
            },
        )
    )
    for path in files:  # copied files no job made (none today) still belong to the crate
        if crate.get(path) is None:
            crate.add_file(packed[path], dest_path=path)
    crate.root_dataset["mentions"] = [run, *actions]
    crate.root_dataset["conformsTo"] = [
        _profile(crate, k) for k in ("process", "workflow_run", "provenance", "workflow")
    ]
    return crate


def write_zip(crate: ROCrate, out: Path) -> Path:
    """The crate as a zip whose bytes depend only on its contents: entries sorted, one fixed
    time, fixed permissions (zipfile would store each file's mtime and mode)."""
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        crate.write(tmp)
        entries = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        with (
            atomic_path(out) as partial,
            zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        ):
            for path in entries:
                info = zipfile.ZipInfo(path.relative_to(tmp).as_posix(), date_time=ZIP_TIME)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes(), compresslevel=9)
    return out


def job_records(provenance: Mapping, jobs_dir: Path) -> list[dict]:
    """Every job record that still matches its outputs: those provenance.json kept, plus the
    jobs after it (render_report, which it cannot name), checked the same way."""
    records = dict(provenance["jobs"])
    for path in sorted(Path(jobs_dir).rglob("*.json")):
        record = read_json(path)
        if record["job"] not in records and is_current(record):
            records[record["job"]] = record
    return list(records.values())
