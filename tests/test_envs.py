"""Conda env files parse and pin exactly what requirements.txt pins (conda channels cannot be
reached from CI, so `--use-conda` itself is not run here)."""

from __future__ import annotations

import re

import yaml

from conftest import REPO


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]+\])?==([^\s;]+)", line)
        if match:
            out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def requirements() -> dict[str, str]:
    return pins((REPO / "requirements.txt").read_text().splitlines())


def env_pins(path) -> dict[str, str]:
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


def test_every_requirement_is_pinned_exactly():
    text = (REPO / "requirements.txt").read_text().splitlines()
    packages = [ln for ln in text if ln.strip() and not ln.startswith(("#", "-"))]
    assert len(requirements()) == len(packages), "every line of requirements.txt must use =="


def test_env_files_pin_what_requirements_pin():
    reqs = requirements()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert {p.stem for p in envs} >= {"data", "tf", "report"}
    for path in envs:
        found = env_pins(path)
        assert found, f"{path.name} pins nothing"
        for name, version in found.items():
            assert name in reqs, f"{path.name}: {name} is not in requirements.txt"
            assert reqs[name] == version, (
                f"{path.name}: {name}=={version}, requirements {reqs[name]}"
            )


def test_env_python_matches_ci_python():
    for path in (REPO / "envs").glob("*.yaml"):
        deps = yaml.safe_load(path.read_text())["dependencies"]
        assert "python=3.11" in deps, f"{path.name} must pin python=3.11 like CI"


def test_every_rule_running_code_has_a_conda_env():
    for smk in (REPO / "rules").glob("*.smk"):
        blocks = re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]
        for block in blocks:
            name = block.split(":", 1)[0]
            if "script:" in block or "shell:" in block:
                match = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
                assert match, f"{smk.name}: rule {name} runs code without conda:"
                assert (smk.parent / match.group(1)).resolve().exists(), f"rule {name}: env missing"
