"""The real workflow (tiny config) on a single-node SLURM cluster started on localhost, through
profiles/slurm-localhost: training jobs ask for a GPU, every job completes, and a training job
killed with scancel (as pre-emption does) resumes from its last epoch when resubmitted. Also
checks the user profile without a cluster."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
PROFILE = REPO / "profiles" / "slurm-localhost"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")
SBATCH_CALL = re.compile(r"^.*sbatch call: (sbatch .*)$", re.MULTILINE)

CONFIGS = [
    REPO / "config.yaml",
    REPO / "tests/configs/tiny.yaml",
    REPO / "tests/configs/slurm.yaml",
]
GPU_RULES = ("extract_features", "train_model")
BACKUP = "results/patient/models/MobileNet/seed0/backup/state.json"


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


@pytest.mark.slurm
@pytest.mark.slow
def test_real_workflow_on_slurm_with_gpu_and_resume(slurm_cluster, tmp_path, capsys):
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
    summary_path = tmp_path / "results/patient/models/MobileNet/seed0/summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from_epoch"] >= 1 and summary["epochs_run"] == 400
    job_environment = summary["runtime"]["environment"]
    assert job_environment["CUDA_VISIBLE_DEVICES"] == "0"  # SLURM handed the job its one GPU
    assert job_environment["SLURM_JOB_PARTITION"] == "gpu"
    assert (tmp_path / "results/report.html").exists()

    jobs = SUBMITTED.findall(log1.read_text()) + SUBMITTED.findall(log2.read_text())
    for job_id, rule in jobs:
        info = slurm_cluster.show_job(job_id)
        expected = "CANCELLED" if job_id == train_jobs[0] else "COMPLETED"
        assert info["JobState"] == expected, (rule, info)
        on_gpu = rule in GPU_RULES
        assert info["Partition"] == ("gpu" if on_gpu else "cpu"), (rule, info)
        assert ("gpu:1" in info.get("TresPerJob", "")) == on_gpu, (rule, info)
    sbatch = SBATCH_CALL.findall(log1.read_text() + log2.read_text())
    training = [line for line in sbatch if "--comment rule_train_model" in line]
    features = [line for line in sbatch if "--comment rule_extract_features" in line]
    assert len(training) == 2 and all(" --gpus=1" in line for line in training)
    assert len(features) == 1 and " --gpus=1" in features[0]
    assert not any("--gpus" in line for line in sbatch if line not in training + features)
    with capsys.disabled():
        print("\nsbatch lines of the real workflow's training jobs (tests/test_slurm.py):")
        for line in features + training:
            print("  " + line.split(" --wrap=")[0])


def test_profiles_keep_cluster_settings_out_of_default() -> None:
    """The user profile submits training with one GPU; profiles/default stays local."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["set-resources"]["train_model"]["gpu"] == 1
    assert profile["set-resources"]["train_model"]["slurm_partition"] == "gpu"
    test_profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert test_profile["slurm-status-command"] == "squeue"  # no slurmdbd on the test cluster
    default = REPO / "profiles/default/config.yaml"
    if default.exists():
        assert "executor" not in (yaml.safe_load(default.read_text()) or {})


def test_slurm_profile_parses_in_dry_run(tmp_path: Path) -> None:
    """`snakemake --profile profiles/slurm -n` plans the real workflow (no cluster needed)."""
    command = [
        str(SNAKEMAKE), "--profile", str(REPO / "profiles/slurm"), "-n", "-s",
        str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile", *map(str, CONFIGS),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    train = run.stdout.split("rule train_model:")[1].split("\n\n")[0]
    assert "gpu=1" in train and "slurm_partition=gpu" in train and "cpus_per_gpu=8" in train
