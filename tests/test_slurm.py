"""Runs a tiny workflow through profiles/slurm-localhost on a real single-node SLURM cluster.

The workflow mimics ours: `prepare` on the cpu partition, `train_model` (resources gpu=1) on the
gpu partition, training in epochs with a checkpoint so that a killed job resumes on resubmission.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401 (the fixture)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
PROFILE = REPO / "profiles" / "slurm-localhost"
EPOCHS = 4
EPOCH_SECONDS = 2
RUN_TIMEOUT_S = 150

SNAKEFILE = """
configfile: "config.yaml"


rule all:
    input:
        "results/model.txt",


rule prepare:
    output:
        "results/data.txt",
    log:
        "logs/prepare.log",
    resources:
        mem_mb=100,
        runtime=5,
    shell:
        "echo prepared by SLURM job $SLURM_JOB_ID > {output} 2> {log}"


# Stands in for training: one checkpoint per epoch, resumed from if present (as Keras
# checkpoints are), so a job killed by pre-emption continues where it stopped.
rule train_model:
    input:
        "results/data.txt",
    output:
        "results/model.txt",
    log:
        "logs/train_model.log",
    params:
        checkpoint="checkpoints/train_model.epoch",
        epochs=config["epochs"],
        seconds=config["epoch_seconds"],
    threads: 1
    resources:
        gpu=1,
        mem_mb=200,
        runtime=5,
    shell:
        \"\"\"
        mkdir -p $(dirname {params.checkpoint})
        start=0
        if [ -s {params.checkpoint} ]; then start=$(cat {params.checkpoint}); fi
        echo "job $SLURM_JOB_ID starts after epoch $start" >> {log}
        for epoch in $(seq $((start + 1)) {params.epochs}); do
            sleep {params.seconds}
            echo $epoch > {params.checkpoint}.tmp
            mv {params.checkpoint}.tmp {params.checkpoint}
            echo "job $SLURM_JOB_ID finished epoch $epoch" >> {log}
        done
        printf 'cuda_visible_devices=%s\\nslurm_job_id=%s\\nresumed_from=%s\\nepochs=%s\\n' \\
            "${{CUDA_VISIBLE_DEVICES:-unset}}" "$SLURM_JOB_ID" "$start" {params.epochs} > {output}
        \"\"\"
"""

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")
SBATCH_CALL = re.compile(r"^.*sbatch call: (sbatch .*)$", re.MULTILINE)


def _write_workflow(workdir: Path) -> Path:
    snakefile = workdir / "Snakefile"
    snakefile.write_text(SNAKEFILE)
    (workdir / "config.yaml").write_text(f"epochs: {EPOCHS}\nepoch_seconds: {EPOCH_SECONDS}\n")
    return snakefile


@contextmanager
def _snakemake(workdir: Path, snakefile: Path, log: Path) -> Iterator[subprocess.Popen]:
    """Snakemake through the test profile in the background; stopped if the test fails."""
    # --verbose makes the plugin log each "sbatch call: ..." line that the test checks.
    cmd = [str(SNAKEMAKE), "--profile", str(PROFILE), "-s", str(snakefile)]
    cmd += ["--directory", str(workdir), "--verbose"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _finish(proc: subprocess.Popen, log: Path) -> int:
    try:
        return proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"snakemake ran over {RUN_TIMEOUT_S} s; its log:\n{log.read_text()[-4000:]}")


def _wait_for(condition, what: str, proc: subprocess.Popen, log: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"snakemake exited before {what}; its log:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
    pytest.fail(f"no {what} after {timeout} s; snakemake log:\n{log.read_text()[-4000:]}")


def _submitted(log: Path) -> list[tuple[str, str]]:
    """(SLURM job id, rule) for each job that snakemake submitted, in order."""
    return SUBMITTED.findall(log.read_text())


def _checkpoint_epoch(workdir: Path) -> int:
    path = workdir / "checkpoints" / "train_model.epoch"
    return int(path.read_text()) if path.exists() and path.read_text().strip() else 0


@pytest.mark.slurm
def test_training_requests_gpu_and_resumes_after_kill(
    slurm_cluster: SlurmCluster,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    snakefile = _write_workflow(tmp_path)

    # Run 1: kill training for real (as pre-emption does) once it has checkpointed one epoch.
    log1 = tmp_path / "snakemake-killed.log"
    with _snakemake(tmp_path, snakefile, log1) as proc:
        _wait_for(lambda: _checkpoint_epoch(tmp_path) >= 1, "first epoch", proc, log1)
        killed = [job for job, rule in _submitted(log1) if rule == "train_model"]
        assert len(killed) == 1, log1.read_text()[-4000:]
        subprocess.run(["scancel", killed[0]], check=True)
        assert _finish(proc, log1) != 0, "snakemake should fail when its training job is killed"
    epochs_before_kill = _checkpoint_epoch(tmp_path)
    assert 1 <= epochs_before_kill < EPOCHS
    assert slurm_cluster.show_job(killed[0])["JobState"] == "CANCELLED"
    assert not (tmp_path / "results" / "model.txt").exists()

    # Run 2: snakemake resubmits the incomplete job, which resumes from the checkpoint.
    log2 = tmp_path / "snakemake-resumed.log"
    with _snakemake(tmp_path, snakefile, log2) as proc:
        assert _finish(proc, log2) == 0, log2.read_text()[-4000:]

    model = dict(
        line.split("=", 1) for line in (tmp_path / "results/model.txt").read_text().splitlines()
    )
    resumed = [job for job, rule in _submitted(log2) if rule == "train_model"]
    assert [rule for _, rule in _submitted(log2)] == ["train_model"]  # prepare was done
    assert model == {
        "cuda_visible_devices": "0",  # SLURM gave the job the node's one GPU
        "slurm_job_id": resumed[0],
        "resumed_from": str(epochs_before_kill),
        "epochs": str(EPOCHS),
    }
    log_lines = (tmp_path / "logs/train_model.log").read_text().splitlines()
    assert f"job {resumed[0]} starts after epoch {epochs_before_kill}" in log_lines

    # Every job SLURM ran: training on the gpu partition with one GPU, the rest without.
    jobs = _submitted(log1) + _submitted(log2)
    for job_id, rule in jobs:
        info = slurm_cluster.show_job(job_id)
        expected = "CANCELLED" if job_id == killed[0] else "COMPLETED"
        assert info["JobState"] == expected, (job_id, rule, info)
        assert info["Partition"] == ("gpu" if rule == "train_model" else "cpu")
        assert ("gpu:1" in info.get("TresPerJob", "")) == (rule == "train_model"), info

    sbatch_lines = SBATCH_CALL.findall(log1.read_text() + log2.read_text())
    train_lines = [line for line in sbatch_lines if "--comment rule_train_model" in line]
    other_lines = [line for line in sbatch_lines if line not in train_lines]
    assert len(train_lines) == 2 and len(other_lines) == 1, sbatch_lines
    assert all(" --gpus=1" in line and " -p gpu" in line for line in train_lines)
    assert all("--gpus" not in line and "--gres" not in line for line in other_lines)
    with capsys.disabled():  # show the submissions in the CI log
        print("\nsbatch lines of the training jobs (test_slurm.py):")
        for line in train_lines:
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
    """`snakemake --profile profiles/slurm -n` accepts the profile (no cluster needed)."""
    snakefile = _write_workflow(tmp_path)
    cmd = [str(SNAKEMAKE), "--profile", str(REPO / "profiles/slurm"), "-n", "-s", str(snakefile)]
    run = subprocess.run(
        [*cmd, "--directory", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-4000:]
    train = run.stdout.split("rule train_model:")[1].split("\n\n")[0]
    assert "gpu=1" in train and "slurm_partition=gpu" in train and "cpus_per_gpu=8" in train
