"""Snakemake without running a job: a scratch directory whose outputs are empty files marked as
made by the current workflow (`--touch`, which records params, inputs and code like a real
run), and stand-ins for `conda` and SLURM's commands that answer only what Snakemake and its
SLURM plugin ask. For the tests of what a run would do: rerun triggers, sbatch lines, envs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from conftest import REPO

SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CONFIGS = [REPO / "config.yaml", REPO / "tests/configs/tiny.yaml"]


def snakemake(
    *args: str, workdir: Path, snakefile: Path = REPO / "Snakefile", path: Path | None = None,
    configs: list[Path] = CONFIGS, check: bool = True, timeout: int = 300,
) -> subprocess.CompletedProcess:  # fmt: skip
    """`snakemake -s snakefile -d workdir --configfile configs... args`, from `workdir`, with
    `path` (stand-in commands) first on PATH."""
    config_args = ["--configfile", *map(str, configs)] if configs else []
    command = [
        str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir), *config_args, *args,
    ]  # fmt: skip
    folders = [str(path)] if path else []
    env = {**os.environ, "PATH": os.pathsep.join([*folders, str(SNAKEMAKE.parent),
                                                  os.environ.get("PATH", "")])}  # fmt: skip
    run = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, env=env, timeout=timeout
    )
    if check:
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return run


def planned_jobs(run: subprocess.CompletedProcess) -> dict[str, int]:
    """rule -> job count from a dry run's `Job stats` table ({} when nothing is to be done)."""
    if "Nothing to be done" in run.stdout + run.stderr:
        return {}
    table = (run.stdout + run.stderr).split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def touch_finished(workdir: Path, **kwargs) -> list[str]:
    """Make every output of the workflow as an empty file (a folder for directory outputs) and
    record it as made by the current workflow; return the output paths."""
    summary = snakemake("--summary", workdir=workdir, **kwargs).stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:] if "\t" in line]
    outputs = [row[0] for row in rows]
    for path, rule in ((row[0], row[2]) for row in rows):
        target = workdir / path
        if rule == "generate_synthetic_data":  # directory(): the generated data folder
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    snakemake("--touch", "--forceall", "--cores", "1", workdir=workdir, **kwargs)
    return outputs


def write_script(folder: Path, name: str, text: str) -> None:
    script = folder / name
    script.write_text(text)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def fake_conda(folder: Path) -> Path:
    """A `conda` that answers Snakemake's checks (info, version, channel priority) only."""
    folder.mkdir(parents=True, exist_ok=True)
    write_script(folder, "conda", f"""#!/bin/sh
case "$*" in
  "info --json") echo '{{"conda_prefix": "{folder}", "platform": "linux-64"}}' ;;
  "--version") echo "conda 25.1.1" ;;
  "config --get channel_priority --json") echo '{{"get": {{"channel_priority": "strict"}}}}' ;;
  *) echo "fake conda cannot: $*" >&2; exit 1 ;;
esac
""")  # fmt: skip
    return folder


def fake_slurm(folder: Path) -> Path:
    """`sbatch` that appends its command line to folder/sbatch.log and prints a job id, and
    status commands that report every submitted job as FAILED (so that Snakemake stops right
    after submitting). Nothing runs."""
    folder.mkdir(parents=True, exist_ok=True)
    log, ids = folder / "sbatch.log", folder / "job-ids"
    write_script(folder, "sbatch", f"""#!/bin/sh
n=$(( $(cat "{ids}" 2>/dev/null | wc -l) + 1001 ))
echo "$n" >> "{ids}"
printf '%s\\n' "sbatch $*" >> "{log}"
echo "$n"
""")  # fmt: skip
    status = f"""#!/bin/sh
case "$*" in
  *JobIdRaw,State*|*%i\\|%T*) [ -f "{ids}" ] && sed 's/$/|FAILED/' "{ids}" ;;
esac
exit 0
"""
    write_script(folder, "sacct", status)
    write_script(folder, "squeue", status)
    write_script(folder, "scontrol", "#!/bin/sh\necho 'MinJobAge = 300 sec'\n")
    for name in ("sinfo", "scancel", "sacctmgr", "sshare"):
        write_script(folder, name, "#!/bin/sh\nexit 0\n")
    return folder


def sbatch_calls(folder: Path) -> list[str]:
    log = folder / "sbatch.log"
    return log.read_text().splitlines() if log.exists() else []
