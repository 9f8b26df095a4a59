"""What Snakemake plans, without running a job (tests/scratch.py): the workflow used as a module
by another one, the outputs it declares, and which jobs rerun after a change. A finished run is
stood in for by empty outputs that `snakemake --touch` records with their params, inputs and
code, so a dry run afterwards names exactly the jobs a real rerun would start."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from scratch import CONFIGS, fake_conda, planned_jobs, snakemake, touch_finished

# Each test runs Snakemake itself (dry runs and --touch runs over the whole DAG): seconds each.
pytestmark = pytest.mark.slow

SHARD_FILES = [f"results/shards/images-{k:05d}-of-00004.tfrecord" for k in range(4)]


# ------------------------------------------------------------------------ used as a module

HOST = """\
configfile: "{repo}/config.yaml"


module cxr:
    snakefile:
        "{repo}/Snakefile"
    config:
        config


use rule * from cxr as cxr_*
"""


def test_another_workflow_imports_this_one_as_a_module(tmp_path):
    (tmp_path / "Snakefile").write_text(HOST.format(repo=REPO))
    run = snakemake("-n", workdir=tmp_path, snakefile=tmp_path / "Snakefile", configs=[])
    jobs = planned_jobs(run)
    for rule in ("generate_synthetic_data", "extract_features", "train_models", "render_report"):
        assert jobs.get(f"cxr_{rule}"), (rule, jobs)
    assert "not present in the Snakefile" not in run.stderr  # local rules found by their names
    # The report's templates are this workflow's, named relative to the host's folder.
    template = os.path.relpath(REPO / "report" / "report.html.j2", tmp_path)
    assert template in run.stdout.split("rule cxr_render_report:", 1)[1].split("\n\n", 1)[0]


def test_a_host_profile_marks_the_modules_gpu_jobs(tmp_path):
    """In the host, the rules carry the prefix; `require_gpu` set for the prefixed name picks
    the GPU env (the job gets the resource as well)."""
    (tmp_path / "Snakefile").write_text(HOST.format(repo=REPO))
    conda = fake_conda(tmp_path / "conda")
    args = ["--set-resources", "cxr_extract_features:require_gpu=1", "--sdm", "conda"]
    target = "results/features/MobileNet/summary.json"
    run = snakemake(
        *args, "--list-conda-envs", "--", target,
        workdir=tmp_path, snakefile=tmp_path / "Snakefile", configs=[], path=conda,
    )  # fmt: skip
    assert "envs/tf-gpu.yaml" in run.stdout, run.stdout[-2000:]
    run = snakemake(
        *args, "-n", "--", target, workdir=tmp_path, snakefile=tmp_path / "Snakefile",
        configs=[], path=conda,
    )  # fmt: skip
    extract = run.stdout.split("rule cxr_extract_features:", 1)[1].split("\n\n", 1)[0]
    assert "require_gpu=1" in extract


# ------------------------------------------------------------------------ declared outputs


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("finished")
    touch_finished(workdir)
    return workdir


def test_shards_and_synthetic_data_are_declared_outputs(finished):
    summary = snakemake("--summary", workdir=finished).stdout
    rows = [line.split("\t") for line in summary.splitlines()]
    rule_of = {row[0]: row[2] for row in rows[1:] if len(row) > 2}
    assert all(rule_of.get(path) == "write_shards" for path in SHARD_FILES), rule_of
    assert rule_of.get("resources/synthetic") == "generate_synthetic_data"
    # (--list-untracked lists the files inside a directory() output all the same: Snakemake
    # compares file names only. The shards, as files, are known.)
    run = snakemake("--list-untracked", workdir=finished)
    assert "tfrecord" not in run.stdout + run.stderr
    deleted = snakemake("--delete-all-output", "--dry-run", workdir=finished)
    listed = deleted.stdout + deleted.stderr
    assert all(path in listed for path in SHARD_FILES) and "resources/synthetic" in listed


# ------------------------------------------------------------------------ rerun triggers


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A copy of this checkout, its workflow finished in place (the usual layout)."""
    root = tmp_path_factory.mktemp("before") / "cxr-repro"
    ignored = shutil.ignore_patterns(
        ".git", ".venv", ".snakemake", "results", "resources", "logs", "__pycache__", "*.pyc"
    )
    shutil.copytree(REPO, root, ignore=ignored)
    touch_finished(root, **in_checkout(root))
    return root


def in_checkout(root: Path, *extra: Path) -> dict:
    return {
        "snakefile": root / "Snakefile",
        "configs": [root / c.relative_to(REPO) for c in CONFIGS] + list(extra),
    }


def plan_after(root: Path, tmp_path: Path, change: str) -> dict[str, int]:
    """The jobs a rerun would start after merging the YAML `change` into the config."""
    edit = tmp_path / "change.yaml"
    edit.write_text(change)
    return planned_jobs(snakemake("-n", workdir=root, **in_checkout(root, edit)))


def test_finished_run_has_nothing_to_do(checkout, tmp_path):
    assert plan_after(checkout, tmp_path, "{}\n") == {}


def test_a_sources_licence_or_version_reruns_only_the_report(checkout, tmp_path):
    change = (
        "datasets: {synthetic: {sources: {kermany: "
        "{license: 'CC0 1.0', version: 'Mendeley Data v3'}}}}\n"
    )
    assert plan_after(checkout, tmp_path, change) == {"render_report": 1, "all": 1}


def test_resources_of_jobs_rerun_nothing(checkout, tmp_path):
    change = (
        "training: {threads: 3, mem_mb: 7000, runtime: 30, gpus: 0, require_gpu: true, "
        "weights_mirror: 'https://mirror.invalid/keras'}\n"
    )
    assert plan_after(checkout, tmp_path, change) == {}


def test_a_curation_setting_reruns_curation_and_what_follows(checkout, tmp_path):
    jobs = plan_after(checkout, tmp_path, "curation: {min_side: 40}\n")
    assert jobs["curate_images"] == 1 and jobs["write_shards"] == 1 and jobs["render_report"] == 1


def test_a_new_seed_refits_each_architectures_heads_not_its_base(checkout, tmp_path):
    """One process fits every run of an architecture, so a new run refits them all (seconds)
    and remaps the primary protocol's runs; the bases and the border probe stay."""
    jobs = plan_after(checkout, tmp_path, "protocols: {patient: {seeds: [0, 1]}}\n")
    assert jobs["train_models"] == 2 and jobs["evaluate_models"] == 2  # tiny: 2 architectures
    assert jobs["explain_model"] == 2
    for rule in ("extract_features", "probe_borders", "split_protocol"):
        assert rule not in jobs, (rule, jobs)


def test_a_head_setting_of_the_primary_protocol_refits_and_remaps(checkout, tmp_path):
    jobs = plan_after(checkout, tmp_path, "protocols: {patient: {training: {epochs: 3}}}\n")
    assert jobs["train_models"] == 2 and jobs["explain_model"] == 2, jobs
    assert "extract_features" not in jobs


def test_moving_the_checkout_reruns_nothing(checkout, tmp_path):
    moved = tmp_path / "after" / "cxr-repro"
    shutil.copytree(checkout, moved, symlinks=True)  # copy2 keeps the modification times
    assert planned_jobs(snakemake("-n", workdir=moved, **in_checkout(moved))) == {}


# ------------------------------------------------------------------------ Snakemake's report


def test_snakemakes_report_describes_this_run_and_labels_each_entry(finished, tmp_path):
    archive = tmp_path / "report.zip"
    snakemake("--report", str(archive), workdir=finished)
    with zipfile.ZipFile(archive) as zipped:
        html = zipped.read("report/report.html").decode()
    # report/workflow.rst, written from the config: the tiny config's two architectures.
    assert "architectures MobileNet, DenseNet121;" in html and "ResNet50" not in html
    assert "learning_curve" in html and "patient-disjoint stratified split" in html
    labels = [json.loads(m) for m in re.findall(r'"labels": (\{[^}]*\})', html)]
    figures = [lab for lab in labels if "figure" in lab]
    assert {(lab["architecture"], lab["seed"]) for lab in figures} == {
        ("MobileNet", 0), ("DenseNet121", 0)
    }  # fmt: skip
    # Run figures are drawn for the primary protocol's runs (those the report shows): one
    # run per architecture here, each with its curves, ROC and confusion matrix.
    assert {lab["training patients"] for lab in figures} == {"all"}
    assert sorted(lab["figure"] for lab in figures) == sorted(["curves", "ROC", "confusion"] * 2)
    tables = [lab["protocol"] for lab in labels if lab.get("content") == "test metrics over runs"]
    assert sorted(tables) == ["article", "learning_curve", "no_marks", "patient"]
