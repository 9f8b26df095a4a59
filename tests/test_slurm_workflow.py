"""The real workflow (tiny config) through profiles/slurm-localhost on a localhost SLURM
cluster: training jobs ask for a GPU, every job completes, and a training job killed with
scancel resumes from its last epoch when Snakemake resubmits it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO
from slurm_cluster import slurm_cluster  # noqa: F401 (the fixture)
from test_slurm import PROFILE, SBATCH_CALL, SNAKEMAKE, SUBMITTED

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
CONFIGS = [
    REPO / "config.yaml",
    REPO / "tests/configs/tiny.yaml",
    REPO / "tests/configs/slurm.yaml",
]
BACKUP = "results/models/MobileNet/seed0/backup/state.json"


def start(workdir: Path, log: Path) -> subprocess.Popen:
    command = [
        str(SNAKEMAKE), "--profile", str(PROFILE), "-s", str(REPO / "Snakefile"),
        "--directory", str(workdir), "--verbose", "--configfile", *map(str, CONFIGS),
    ]  # fmt: skip
    with open(log, "w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def wait(proc: subprocess.Popen, log: Path, timeout: float = 420) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait(timeout=60)
        pytest.fail(f"snakemake ran over {timeout} s:\n{log.read_text()[-4000:]}")


def test_real_workflow_on_slurm_with_gpu_and_resume(slurm_cluster, tmp_path, capsys):  # noqa: F811
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    proc = start(tmp_path, log1)
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / BACKUP).exists():  # training has finished at least one epoch
            assert proc.poll() is None, f"snakemake ended early:\n{log1.read_text()[-4000:]}"
            assert time.monotonic() < deadline, log1.read_text()[-4000:]
            time.sleep(0.2)
        train_jobs = [
            job for job, rule in SUBMITTED.findall(log1.read_text()) if rule == "train_model"
        ]
        subprocess.run(["scancel", train_jobs[0]], check=True)  # what pre-emption does
        assert wait(proc, log1) != 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    assert slurm_cluster.show_job(train_jobs[0])["JobState"] == "CANCELLED"
    assert (tmp_path / BACKUP).exists(), "the checkpoint must survive the failed job"

    proc = start(tmp_path, log2)
    assert wait(proc, log2) == 0, log2.read_text()[-4000:]
    summary = json.loads((tmp_path / "results/models/MobileNet/seed0/summary.json").read_text())
    assert summary["resumed_from_epoch"] >= 1 and summary["epochs_run"] == 400
    assert (tmp_path / "results/report.html").exists()

    jobs = SUBMITTED.findall(log1.read_text()) + SUBMITTED.findall(log2.read_text())
    for job_id, rule in jobs:
        state = slurm_cluster.show_job(job_id)["JobState"]
        assert state == ("CANCELLED" if job_id == train_jobs[0] else "COMPLETED"), (rule, state)
    sbatch = SBATCH_CALL.findall(log1.read_text() + log2.read_text())
    training = [line for line in sbatch if "--comment rule_train_model" in line]
    assert len(training) == 2 and all(" --gpus=1" in line for line in training)
    assert not any("--gpus" in line for line in sbatch if line not in training)
    with capsys.disabled():
        print("\nsbatch lines of the real workflow's training jobs (test_slurm_workflow.py):")
        for line in training:
            print("  " + line.split(" --wrap=")[0])
