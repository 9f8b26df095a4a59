"""Conda env files and requirements files agree (extras included), each env pins its whole pip
closure, and the rules pick the CPU or the GPU TensorFlow env as the profile says. Conda
channels cannot be reached from CI, so `--use-conda` itself is not run here: a stand-in `conda`
(tests/scratch.py) answers the few questions Snakemake asks before it lists a run's envs."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import REPO
from scratch import fake_conda, snakemake

ENVS = REPO / "envs"
# The requirements file that each env follows (the others follow requirements.txt).
REQUIREMENTS_OF = {"tf-gpu": "requirements-gpu.txt"}
PIN = re.compile(r"([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?==([^\s;]+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, tuple[frozenset[str], str]]:
    """name -> (extras, version) of every `name[extras]==version` line."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = PIN.fullmatch(line)
        if match:
            extras = frozenset(e.strip() for e in (match.group(2) or "").split(",") if e.strip())
            out[normalise(match.group(1))] = (extras, match.group(3))
    return out


def requirements(name: str = "requirements.txt") -> dict[str, tuple[frozenset[str], str]]:
    """A requirements file's pins, following `-r` includes (a later line wins)."""
    path = REPO / name
    out: dict[str, tuple[frozenset[str], str]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            out.update(requirements(line[3:].strip()))
        else:
            out.update(pins([line]))
    return out


def env_pins(path: Path) -> dict[str, tuple[frozenset[str], str]]:
    spec = yaml.safe_load(path.read_text())
    assert "dependencies" in spec, f"{path.name}: no dependencies"
    lines = []
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            lines += dep.get("pip", [])
        elif "=" in dep and not dep.startswith("python"):
            name, version = re.split(r"=+", dep, maxsplit=1)
            lines.append(f"{name}=={version}")
    return pins(lines)


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def test_every_requirement_is_pinned_exactly():
    for name in ("requirements.txt", "requirements-gpu.txt"):
        text = (REPO / name).read_text().splitlines()
        packages = [ln for ln in text if ln.strip() and not ln.startswith(("#", "-"))]
        assert len(pins(packages)) == len(packages), f"every line of {name} must use =="


def test_gpu_requirements_add_only_tensorflows_cuda_wheels():
    cpu, gpu = requirements(), requirements("requirements-gpu.txt")
    assert gpu["tensorflow"] == (frozenset({"and-cuda"}), cpu["tensorflow"][1])
    assert {k: v for k, v in gpu.items() if k != "tensorflow"} == {
        k: v for k, v in cpu.items() if k != "tensorflow"
    }
    assert cpu["tensorflow"][0] == frozenset(), "requirements.txt installs plain TensorFlow"


def test_env_files_pin_what_requirements_pin_extras_included():
    envs = env_files()
    assert {p.stem for p in envs} >= {"data", "tf", "tf-gpu", "report"}
    for path in envs:
        reqs = requirements(REQUIREMENTS_OF.get(path.stem, "requirements.txt"))
        found = env_pins(path)
        assert found, f"{path.name} pins nothing"
        for name, pinned in found.items():
            if name in reqs:
                assert reqs[name] == pinned, f"{path.name}: {name} {pinned}, not {reqs[name]}"
    assert env_pins(ENVS / "tf-gpu.yaml")["tensorflow"][0] == frozenset({"and-cuda"})


def test_cpu_env_brings_no_cuda():
    """envs/tf.yaml installs anywhere (macOS included): plain TensorFlow, no nvidia wheels."""
    found = env_pins(ENVS / "tf.yaml")
    assert found["tensorflow"][0] == frozenset()
    assert not [name for name in found if name.startswith("nvidia-")]
    assert [name for name in env_pins(ENVS / "tf-gpu.yaml") if name.startswith("nvidia-cudnn")]


def test_a_package_has_one_version_across_envs():
    versions: dict[str, set[str]] = {}
    for path in env_files():
        for name, (_, version) in env_pins(path).items():
            versions.setdefault(name, set()).add(version)
    assert {n: v for n, v in versions.items() if len(v) > 1} == {}


def test_env_files_pin_their_whole_closure():
    """Every dependency (extras included) of every pinned package is pinned, at a version the
    package accepts. Checked offline with the metadata of the packages that this venv has at
    the pinned version (envs/pin.py resolves the closure against PyPI)."""
    for path in env_files():
        found = env_pins(path)
        checked = 0
        for name, (extras, version) in found.items():
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            if dist.version != version:
                continue
            checked += 1
            for text in dist.requires or []:
                req = Requirement(text)
                contexts = [{"extra": e} for e in extras] or [{"extra": ""}]
                if req.marker and not any(req.marker.evaluate(c) for c in contexts):
                    continue
                dep = normalise(req.name)
                assert dep in found, f"{path.name}: {name} needs {req}, which is not pinned"
                assert req.specifier.contains(found[dep][1], prereleases=True), (
                    f"{path.name}: {name} needs {req}, pinned {found[dep][1]}"
                )
        assert checked >= len(found) // 2, f"{path.name}: too few packages checked ({checked})"


def test_env_python_matches_ci_python():
    for path in env_files():
        deps = yaml.safe_load(path.read_text())["dependencies"]
        assert "python=3.11" in deps, f"{path.name} must pin python=3.11 like CI"


def test_every_rule_running_code_has_a_conda_env():
    for smk in (REPO / "rules").glob("*.smk"):
        blocks = re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":", 1)[0]
            if "script:" in block or "shell:" in block:
                match = re.search(r'conda:\s*\n\s*(?:"([^"]+)"|tensorflow_env\("(\w+)"\))', block)
                assert match, f"{smk.name}: rule {name} runs code without conda:"
                if match.group(2):
                    assert match.group(2) == name, f"rule {name} asks for {match.group(2)}'s env"
                    envs = ["../envs/tf.yaml", "../envs/tf-gpu.yaml"]
                else:
                    envs = [match.group(1)]
                for env in envs:
                    assert (smk.parent / env).resolve().exists(), f"rule {name}: {env} missing"


# ------------------------------------------------------------------- which env a job uses


@pytest.fixture(scope="module")
def conda_bin(tmp_path_factory) -> Path:
    return fake_conda(tmp_path_factory.mktemp("fake-conda"))


def conda_envs(conda_bin: Path, workdir: Path, *args: str, configs=(REPO / "config.yaml",)):
    """The env files of the jobs that build results/features/MobileNet/ (data preparation,
    shards, extract_features), as `snakemake --list-conda-envs` lists them."""
    target = "results/features/MobileNet/summary.json"
    run = snakemake(
        "--sdm", "conda", "--list-conda-envs", *args, "--", target,
        workdir=workdir, path=conda_bin, configs=list(configs),
    )  # fmt: skip
    listed = run.stdout.split("environment\tcontainer\tlocation", 1)[1]
    return {Path(line.split("\t")[0]).name for line in listed.splitlines() if line.strip()}


def test_local_runs_use_the_cpu_tensorflow_env(conda_bin, tmp_path):
    assert conda_envs(conda_bin, tmp_path) == {"data.yaml", "tf.yaml"}


def test_the_slurm_profile_puts_gpu_jobs_in_the_gpu_env(conda_bin, tmp_path):
    """write_shards stays on the CPU env; extract_features, which the profile sends to a GPU
    node with `require_gpu`, gets the CUDA build."""
    profile = ["--workflow-profile", str(REPO / "profiles/slurm")]
    assert conda_envs(conda_bin, tmp_path, *profile) == {"data.yaml", "tf.yaml", "tf-gpu.yaml"}


@pytest.mark.slow  # Snakemake plans the DAG with stand-in conda
def test_the_gpu_env_follows_the_rules_own_require_gpu(conda_bin, tmp_path):
    extract = ["--set-resources", "extract_features:require_gpu=1"]
    assert conda_envs(conda_bin, tmp_path, *extract) == {"data.yaml", "tf.yaml", "tf-gpu.yaml"}
    other = ["--set-resources", "train_models:require_gpu=1"]  # no train_models job here
    assert conda_envs(conda_bin, tmp_path, *other) == {"data.yaml", "tf.yaml"}
    settings = tmp_path / "gpu.yaml"
    settings.write_text("training: {require_gpu: true}\n")
    configs = (REPO / "config.yaml", settings)
    assert "tf-gpu.yaml" in conda_envs(conda_bin, tmp_path, configs=configs)
