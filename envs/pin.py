"""Write envs/*.yaml: each conda env's whole pip closure, pinned, from requirements*.txt.

    python envs/pin.py        # needs pip >= 23 and access to PyPI; rewrites the four env files

Each env lists what its rules import at the versions of requirements.txt (requirements-gpu.txt
for tf-gpu), then every package those need, as pip resolves them on PyPI for Python 3.11 on
Linux x86_64 and, for the CPU envs, macOS arm64 (the two must agree, else this stops). Conda
itself only supplies python=3.11 and pip: an explicit conda lock (envs/<env>.<platform>.pin.txt)
needs the conda channels, which this project's CI cannot reach. tests/test_envs.py checks that
the files agree with requirements*.txt and that every pinned package's dependencies are pinned.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ENVS_DIR = Path(__file__).resolve().parent
REPO = ENVS_DIR.parent
LINUX = [f"manylinux_2_{v}_x86_64" for v in (28, 27, 17, 12, 5)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64",
]  # fmt: skip
MACOS = [f"macosx_{v}_0_arm64" for v in (14, 13, 12, 11)] + ["macosx_10_9_universal2"]

# name: (what its rules do, requirements file, top-level packages, platforms)
# What the TensorFlow jobs import; tf and tf-gpu differ only in the TensorFlow build.
TF_PACKAGES = ["tensorflow", "keras", "protobuf", "numpy", "pandas", "scikit-learn", "scipy",
               "statsmodels", "pillow", "imagehash", "matplotlib", "seaborn", "pyyaml"]  # fmt: skip
ENVS = {
    "data": (
        "Curation, splits, shards' inputs and audit statistics.",
        "requirements.txt",
        ["numpy", "pandas", "scikit-learn", "scipy", "statsmodels", "pillow", "imagehash",
         "pyyaml", "jsonschema", "matplotlib", "seaborn"],
        {"Linux x86_64": LINUX, "macOS arm64": MACOS},
    ),
    "report": (
        "Report rendering and the run's RO-Crate.",
        "requirements.txt",
        ["jinja2", "numpy", "pandas", "pillow", "matplotlib", "seaborn", "pyyaml", "rocrate"],
        {"Linux x86_64": LINUX, "macOS arm64": MACOS},
    ),
    "tf": (
        "Shards, training, evaluation and the border probe, on the CPU: plain TensorFlow, so it\n"
        "# installs on any machine (macOS included) without CUDA. Jobs that must run on a GPU use\n"
        "# envs/tf-gpu.yaml instead (rules/common.smk: tensorflow_env).",
        "requirements.txt",
        TF_PACKAGES,
        {"Linux x86_64": LINUX, "macOS arm64": MACOS},
    ),
    "tf-gpu": (
        "envs/tf.yaml with TensorFlow's CUDA and cuDNN wheels (tensorflow[and-cuda]): the env of\n"
        "# the jobs that must run on a GPU (training.require_gpu, or a profile's `require_gpu`\n"
        "# resource, as in profiles/slurm). Linux x86_64 only; the wheels install on a GPU-less\n"
        "# login node too (`snakemake --conda-create-envs-only`); they need an NVIDIA driver.",
        "requirements-gpu.txt",
        TF_PACKAGES,
        {"Linux x86_64": LINUX},
    ),
}  # fmt: skip

REQUIREMENT = re.compile(r"([A-Za-z0-9_.-]+)(\[[^\]]+\])?==(\S+)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> dict[str, str]:
    """name -> `name[extras]==version` for every pinned line of a requirements file and the
    files it includes with -r (a later line wins, so requirements-gpu.txt adds extras)."""
    lines: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines.update(requirement_lines(path.parent / line[3:].strip()))
        elif match := REQUIREMENT.fullmatch(line):
            lines[normalise(match.group(1))] = line
    return lines


def resolve(requirements: list[str], platforms: list[str]) -> dict[str, str]:
    """name -> version of everything pip installs for `requirements` on `platforms`."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--quiet",
            "--ignore-installed", "--only-binary=:all:", "--python-version", "3.11",
            "--index-url", "https://pypi.org/simple", "--report", str(report),
            *(arg for p in platforms for arg in ("--platform", p)), *requirements,
        ]  # fmt: skip
        subprocess.run(command, check=True)
        installed = json.loads(report.read_text())["install"]
    return {normalise(i["metadata"]["name"]): i["metadata"]["version"] for i in installed}


def env_file(name: str) -> str:
    purpose, requirements_file, packages, platforms = ENVS[name]
    pinned = requirement_lines(REPO / requirements_file)
    top = [pinned[normalise(p)] for p in packages]
    closures = {label: resolve(top, tags) for label, tags in platforms.items()}
    first, *others = closures.values()
    for label, closure in closures.items():
        if closure != first:
            raise SystemExit(f"{name}: the closure differs on {label}; add markers")
    for line in top:
        pkg, version = REQUIREMENT.fullmatch(line).group(1, 3)
        resolved = first.get(normalise(pkg))
        if resolved != version:
            raise SystemExit(f"{name}: pip resolved {pkg} {resolved}, not {version}")
    rest = sorted(set(first) - {normalise(p) for p in packages})
    out = [
        f"# {purpose}",
        "# Generated by envs/pin.py: edit requirements*.txt or envs/pin.py, then rerun it.",
        "channels:",
        "  - conda-forge",
        "  - nodefaults",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
        "  - pip:",
        f"      # What the rules import, as pinned in {requirements_file}:",
        *(f"      - {line}" for line in top),
        f"      # What those need, as pip resolves them on PyPI ({', '.join(platforms)}):",
        *(f"      - {pkg}=={first[pkg]}" for pkg in rest),
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    for name in ENVS:
        (ENVS_DIR / f"{name}.yaml").write_text(env_file(name))
        print(f"wrote envs/{name}.yaml")


if __name__ == "__main__":
    main()
