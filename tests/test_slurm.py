"""The real workflow (tiny config) on a single-node SLURM cluster started on localhost, through
profiles/slurm-localhost: training jobs ask for a GPU, every job completes, and a training job
killed with scancel (as pre-emption does) fits its heads again when resubmitted, to the result
the killed job had reached (a head is refitted, not resumed: cxr.heads). Also
checks the user profile without a cluster: the sbatch lines it makes, with stand-in SLURM
commands (tests/scratch.py), for its --gpus and its documented --gres variant."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scratch import fake_slurm, sbatch_calls, snakemake, touch_finished

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
PROFILE = REPO / "profiles" / "slurm-localhost"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")
SBATCH_CALL = re.compile(r"^.*sbatch call: (sbatch .*)$", re.MULTILINE)

CONFIGS = [
    REPO / "config.yaml",
    REPO / "tests/configs/tiny.yaml",
    REPO / "tests/configs/slurm.yaml",
]
# The localhost profile sends these to its GPU partition one job each (no groups there).
GPU_RULES = ("extract_features", "train_models")
# profiles/slurm's GPU job per architecture: these rules, as one group job.
BASE_GROUP = ("extract_features", "train_models", "explain_model")
# Written when the job's first head is fitted; its repeated splits' heads are still to come.
FIRST_HISTORY = "results/patient/models/MobileNet/seed0/history.csv"


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
        while not (tmp_path / FIRST_HISTORY).exists():  # training has fitted its first head
            assert proc.poll() is None, f"snakemake ended early:\n{log1.read_text()[-4000:]}"
            assert time.monotonic() < deadline, log1.read_text()[-4000:]
            time.sleep(0.05)
        before_kill = (tmp_path / FIRST_HISTORY).read_bytes()
        train_jobs = [
            job for job, rule in SUBMITTED.findall(log1.read_text()) if rule == "train_models"
        ]
        subprocess.run(["scancel", train_jobs[0]], check=True)  # what pre-emption does
        assert wait(proc, log1) != 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    assert slurm_cluster.show_job(train_jobs[0])["JobState"] == "CANCELLED"

    proc = start(tmp_path, log2)
    assert wait(proc, log2) == 0, log2.read_text()[-4000:]
    summary_path = tmp_path / "results/patient/models/MobileNet/seed0/summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["resumed_from_epoch"] == 0 and summary["epochs_run"] == 400
    # The refitted head is the one the killed job had fitted, to the last bit of its history.
    assert (tmp_path / FIRST_HISTORY).read_bytes() == before_kill
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
    training = [line for line in sbatch if "--comment rule_train_models" in line]
    features = [line for line in sbatch if "--comment rule_extract_features" in line]
    assert len(training) == 2 and all(" --gpus=1" in line for line in training)
    assert len(features) == 1 and " --gpus=1" in features[0]
    assert not any("--gpus" in line for line in sbatch if line not in training + features)
    with capsys.disabled():
        print("\nsbatch lines of the real workflow's training jobs (tests/test_slurm.py):")
        for line in features + training:
            print("  " + line.split(" --wrap=")[0])


def test_profiles_keep_cluster_settings_out_of_default() -> None:
    """The user profile asks for one GPU per architecture's base group; profiles/default stays
    local and lets one GPU job run at a time."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert profile["executor"] == "slurm"
    groups = dict(entry.split("=") for entry in profile["groups"])
    assert {rule for rule, group in groups.items() if group == "base"} == set(BASE_GROUP)
    assert not [e for e in profile["group-components"] if e.startswith("base=")]
    resources = profile["set-resources"]
    for rule in BASE_GROUP:
        assert resources[rule]["gpu"] == 1 and resources[rule]["require_gpu"] == 1
        assert resources[rule]["slurm_partition"] == "gpu"
        assert resources[rule]["runtime"] <= 60, "sized to the work, not hours"
    assert "gpu" not in resources["probe_borders"]  # a CPU job, in the results group
    test_profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert test_profile["slurm-status-command"] == "squeue"  # no slurmdbd on the test cluster
    default = yaml.safe_load((REPO / "profiles/default/config.yaml").read_text())
    assert "executor" not in default
    assert default["resources"] == {"gpu": 1}


def profile_dry_run(*configs: Path, workdir: Path) -> subprocess.CompletedProcess:
    """`snakemake --workflow-profile profiles/slurm -n` of the real workflow (no cluster)."""
    command = [
        str(SNAKEMAKE), "--workflow-profile", str(REPO / "profiles/slurm"), "-n", "-s",
        str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", *map(str, configs),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-4000:]
    return run


def planned_submissions(*configs: Path, workdir: Path) -> list[tuple[str, list[str]]]:
    """What `snakemake --workflow-profile profiles/slurm` would submit, from its dry run: one
    (group or rule, its rules) per sbatch job; local rules and `all` are not submitted."""
    run = profile_dry_run(*configs, workdir=workdir)
    jobs, current = [], None
    for line in run.stdout.splitlines():
        group = re.search(r"\] Group job (\w+) ", line)
        if group:
            current = (group.group(1), [])
            jobs.append(current)
        elif re.match(r"^rule (\w+):$", line):  # not indented: a job of its own
            current = None
            if line != "rule all:":  # the target rule runs nothing: never submitted
                jobs.append((line[5:-1], [line[5:-1]]))
        elif current and re.match(r"^    rule (\w+):$", line):
            current[1].append(line.strip()[5:-1])
    return jobs


def test_an_article_sized_plan_is_five_sbatch_jobs_three_on_gpus(tmp_path: Path, capsys):
    """The article_local plan's shape (3 architectures, 4 protocols, 15 runs each, border probe,
    saliency) on the embedded data: one GPU job per architecture, two CPU jobs."""
    sized = tmp_path / "article-sized.yaml"
    sized.write_text("training: {seeds: [0, 1, 2]}\n")
    jobs = planned_submissions(REPO / "config.yaml", sized, workdir=tmp_path)
    names = [name for name, _ in jobs]
    assert sorted(names) == ["base", "base", "base", "prepare", "results"], names
    bases = [rules for name, rules in jobs if name == "base"]
    assert sum(rules.count("train_models") for rules in bases) == 3  # 45 runs in 3 jobs
    assert sum(rules.count("explain_model") for rules in bases) == 3
    results = dict(jobs)["results"]
    assert results.count("evaluate_models") == 3 and "render_report" in results
    assert "probe_borders" in results
    with capsys.disabled():
        print(f"\nprofiles/slurm, article-sized plan: {len(jobs)} sbatch jobs, 3 with a GPU")


def test_slurm_profile_parses_in_dry_run(tmp_path: Path) -> None:
    """`snakemake --workflow-profile profiles/slurm -n` plans the real workflow (no cluster)."""
    run = profile_dry_run(*CONFIGS, workdir=tmp_path)
    extract = run.stdout.split("rule extract_features:")[1].split("\n\n")[0]
    assert "gpu=1" in extract and "slurm_partition=gpu" in extract
    assert "cpus_per_gpu=8" in extract and "require_gpu=1" in extract
    train = run.stdout.split("rule train_models:")[1].split("\n\n")[0]
    assert "gpu=1" in train and "slurm_partition=gpu" in train and "require_gpu=1" in train


# ------------------------------------------------ sbatch lines, with stand-in SLURM commands

# One job of each kind whose inputs are up to date in a finished scratch run: a base (GPU), a
# head (GPU, another architecture so it does not wait for that base) and the audit (CPU).
SUBMITTED_TARGETS = {
    "extract_features": "results/features/DenseNet121/summary.json",
    "train_models": "results/patient/models/MobileNet/seed0/summary.json",
    "audit_leakage": "results/audit/leakage.json",
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The tiny workflow as if it had run (empty outputs, provenance recorded)."""
    workdir = tmp_path_factory.mktemp("finished")
    touch_finished(workdir)
    return workdir


def submit(profile_dir: Path, workdir: Path, bin_dir: Path) -> dict[str, list[str]]:
    """Run the profile on SUBMITTED_TARGETS with stand-in SLURM commands (each submitted job
    reported FAILED at once); return each rule's sbatch arguments."""
    targets = list(SUBMITTED_TARGETS.values())
    fake = fake_slurm(bin_dir)
    run = snakemake(
        "--workflow-profile", str(profile_dir), "--retries", "0", "--latency-wait", "0",
        "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
        "--forcerun", *targets, "--", *targets,
        workdir=workdir, path=fake, check=False, timeout=180,
    )  # fmt: skip
    calls = {}
    for line in sbatch_calls(fake):
        options, _, wrapped = line.partition(" --wrap=")
        rule = re.search(r"--comment rule_(\w+?)(?:_wildcards_\S+)?(?: |$)", options).group(1)
        # A group job's comment is rule_<group>_<its rules>: here one rule each.
        rule = next((name for name in SUBMITTED_TARGETS if rule.endswith(name)), rule)
        calls[rule] = [*shlex.split(options), "--wrap", wrapped]
    assert set(calls) == set(SUBMITTED_TARGETS), run.stdout[-3000:] + run.stderr[-3000:]
    return calls


def job_resources(args: list[str]) -> set[str]:
    """The `rule:resource=value` overrides that the job's own Snakemake gets (--set-resources,
    base64-encoded by Snakemake on the wrapped command line)."""
    wrapped = shlex.split(args[args.index("--wrap") + 1])
    values = wrapped[wrapped.index("--set-resources") + 1 :]
    decoded = set()
    for value in values:
        if not value.startswith("base64//"):
            break
        decoded.add(base64.b64decode(value.removeprefix("base64//")).decode())
    return decoded


@pytest.mark.slow  # runs the workflow through the plugin against stand-in SLURM commands
def test_slurm_profile_submits_gpu_jobs_with_gpus(finished, tmp_path):
    calls = submit(REPO / "profiles/slurm", finished, tmp_path / "bin")
    for rule in GPU_RULES:
        options = calls[rule][: calls[rule].index("--wrap")]
        assert "--gpus=1" in options and "--cpus-per-gpu=8" in options, options
        assert not [a for a in options if a.startswith("--gres")], options
        assert options[options.index("-p") + 1] == "gpu"
        # The job's own Snakemake gets require_gpu, which makes it fail without a GPU.
        assert f"{rule}:require_gpu=1" in job_resources(calls[rule])
    cpu = calls["audit_leakage"][: calls["audit_leakage"].index("--wrap")]
    assert not [a for a in cpu if a.startswith(("--gpus", "--gres", "--cpus-per-gpu"))], cpu
    assert cpu[cpu.index("-p") + 1] == "cpu"


@pytest.mark.slow  # runs the workflow through the plugin against stand-in SLURM commands
def test_gres_variant_of_the_slurm_profile_sends_gres_only(finished, tmp_path):
    """The profile's documented switch for clusters that only take --gres, applied as written:
    `gpu: 1` replaced by `gpu: 0` and `gres: "gpu:1"`."""
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    assert text.count("\n    gpu: 1\n") == 1, "the switch is one line in extract_features' block"
    profile = tmp_path / "slurm-gres"
    profile.mkdir()
    (profile / "config.yaml").write_text(
        text.replace("\n    gpu: 1\n", '\n    gpu: 0\n    gres: "gpu:1"\n')
    )
    calls = submit(profile, finished, tmp_path / "bin")
    for rule in GPU_RULES:
        options = calls[rule][: calls[rule].index("--wrap")]
        assert "--gres=gpu:1" in options and "--cpus-per-gpu=8" in options, options
        assert not [a for a in options if a.startswith("--gpus")], options
    cpu = calls["audit_leakage"][: calls["audit_leakage"].index("--wrap")]
    assert not [a for a in cpu if a.startswith(("--gpus", "--gres"))], cpu


@pytest.mark.slow
def test_a_gpu_job_without_a_gpu_fails_at_once_saying_why(finished):
    """The resource the profile sets reaches the job, which stops before touching its inputs
    (here empty files) when TensorFlow sees no GPU; CUDA_VISIBLE_DEVICES hides any GPU."""
    target = SUBMITTED_TARGETS["extract_features"]
    started = time.monotonic()
    run = subprocess.run(
        [
            str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(finished),
            "--configfile", *map(str, CONFIGS[:2]), "--cores", "1",
            "--set-resources", "extract_features:require_gpu=1", "--forcerun", target, "--", target,
        ],
        capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )  # fmt: skip
    seconds = time.monotonic() - started
    assert run.returncode != 0
    log = (finished / "logs/extract_features/DenseNet121.log").read_text()
    assert "a GPU is required" in log, log[-2000:]
    assert seconds < 120, f"took {seconds:.0f} s"
