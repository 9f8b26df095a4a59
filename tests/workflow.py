"""Run the real Snakefile in a scratch directory (so tests never touch the repo's results/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def run_workflow(
    workdir: Path, *configs: str, targets: tuple[str, ...] = (), extra: tuple[str, ...] = (),
    check: bool = True, timeout: int = 900,
) -> subprocess.CompletedProcess:  # fmt: skip
    """`snakemake --cores 2` on config.yaml merged with `configs` (paths under tests/configs)."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = [str(REPO / "config.yaml"), *(str(REPO / "tests" / "configs" / c) for c in configs)]
    # (an absolute path in `configs` stays as it is: Path's / keeps absolute right operands)
    command = [
        str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--cores", "2", "--configfile", *files, *extra, "--", *targets,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result
