"""A single-node SLURM cluster on localhost for tests: the `slurm_cluster` pytest fixture.

It writes /etc/slurm/slurm.conf and gres.conf (one fake GPU), starts munged, slurmctld and slurmd
in the foreground as child processes, and stops them and removes the files at the end. Tests that
use it skip, with the reason, where the Debian packages are missing or the cluster does not come
up. Import the fixture into a test module with `from slurm_cluster import slurm_cluster`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SLURM_ETC = Path("/etc/slurm")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")
# Our files carry this first line; any other /etc/slurm/slurm.conf belongs to a real cluster.
MARKER = "# Written by cxr-repro tests/slurm_cluster.py for a throwaway test cluster."
# Set (e.g. in CI after installing the packages) to fail instead of skip where SLURM won't start.
REQUIRE_ENV = "CXR_REQUIRE_SLURM"
BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
PARTITIONS = ("cpu", "gpu")
# squeue reports a finished job only for MinJobAge seconds; the plugin's squeue status check
# needs at least 3x its first check delay, and the test reads finished jobs with scontrol.
MIN_JOB_AGE_S = 600
MEM_MARGIN = 0.9  # declare less memory than exists, or slurmd drains the node ("Low RealMemory")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here; the message says why."""


@dataclass
class SlurmCluster:
    """A running test cluster: its node name, partitions and the folder with its state and logs."""

    node: str
    state_dir: Path
    partitions: tuple[str, ...] = PARTITIONS
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def show_job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, TresPerJob, ...), also for finished jobs."""
        out = _run(["scontrol", "--oneliner", "show", "job", str(job_id)]).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def logs(self) -> str:
        """The tails of the daemons' logs, for failure messages."""
        parts = []
        for log in sorted(self.state_dir.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-8:]
            parts.append(f"--- {log}\n" + "\n".join(lines))
        return "\n".join(parts)


def _run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def slurm_conf(node_line: str, node: str, state_dir: Path) -> str:
    """slurm.conf for one node that is controller and compute node, without accounting."""
    return f"""{MARKER}
ClusterName=cxrtest
SlurmctldHost={node}(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmctldPidFile={state_dir}/slurmctld.pid
SlurmdPidFile={state_dir}/slurmd.pid
SlurmdSpoolDir={state_dir}/slurmd
StateSaveLocation={state_dir}/slurmctld
SlurmctldLogFile={state_dir}/slurmctld.log
SlurmdLogFile={state_dir}/slurmd.log
# No cgroup hierarchy in containers: track processes by parent id, bind tasks by affinity.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Without DefMemPerCPU a job that asks no memory gets the whole node.
DefMemPerCPU=256
GresTypes=gpu
ReturnToService=2
MinJobAge={MIN_JOB_AGE_S}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
{node_line} NodeAddr=127.0.0.1 Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={node} MaxTime=INFINITE State=UP
"""


def gres_conf(node: str) -> str:
    """gres.conf: one GPU backed by /dev/null, since slurmd drops a GRES that has no device file."""
    return f"{MARKER}\nAutoDetect=off\nNodeName={node} Name=gpu File=/dev/null\n"


def hardware_node_line(memory_margin: float = MEM_MARGIN) -> str:
    """The NodeName line for this machine from `slurmd -C`, with RealMemory lowered by a margin."""
    out = _run(["slurmd", "-C"]).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("NodeName=")), None)
    if line is None:
        raise SlurmUnavailable(f"`slurmd -C` printed no NodeName line: {out!r}")
    fields = dict(item.split("=", 1) for item in line.split())
    fields["RealMemory"] = str(int(int(fields["RealMemory"]) * memory_margin))
    return " ".join(f"{key}={value}" for key, value in fields.items())


def _check_can_start() -> None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise SlurmUnavailable(
            f"SLURM/munge binaries not found: {', '.join(missing)}; "
            "run `bash .ci/install-debian.sh` (installs slurmctld slurmd slurm-client munge)"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailable("starting slurmd needs root (it runs jobs as their users)")
    conf = SLURM_ETC / "slurm.conf"
    if conf.exists() and not conf.read_text(errors="replace").startswith(MARKER):
        raise SlurmUnavailable(f"{conf} exists and was not written by this test: a real cluster")
    for daemon in ("slurmctld", "slurmd"):
        pids = _pids(daemon)
        if pids:
            raise SlurmUnavailable(f"{daemon} already runs (pid {pids}); stop it first")


def _pids(name: str) -> list[int]:
    # /proc rather than pidof, which not every image has.
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == name:
                pids.append(int(proc.name))
        except OSError:
            continue  # exited meanwhile
    return pids


def _munge_works() -> bool:
    cred = _run(["munge", "-n"])
    return cred.returncode == 0 and _run_input(["unmunge"], cred.stdout).returncode == 0


def _run_input(cmd: list[str], text: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=20, check=False)


def _start(cluster: SlurmCluster, name: str, cmd: list[str], user: str | None = None) -> None:
    # Foreground daemons as our children: we know their pids and stop exactly them.
    with open(cluster.state_dir / f"{name}.out.log", "w") as log:
        cluster.processes[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            user=user,
            group=user,
        )


def _wait(what: str, ready, cluster: SlurmCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in cluster.processes.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {proc.returncode}\n{cluster.logs()}")
        if ready():
            return
        time.sleep(0.3)
    raise SlurmUnavailable(f"{what} not ready after {timeout:.0f} s\n{cluster.logs()}")


def _start_munge(cluster: SlurmCluster) -> None:
    if _munge_works():
        return  # a munged already serves the default socket; slurm uses that one
    if not MUNGE_KEY.exists():
        if _run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"]).returncode != 0:
            raise SlurmUnavailable(f"cannot create {MUNGE_KEY}")
        shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_RUN.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_RUN, "munge", "munge")
    _start(cluster, "munged", ["munged", "--foreground"], user="munge")
    _wait("munged", _munge_works, cluster, timeout=15)


def _node_states(node: str) -> set[str]:
    # One line per partition the node is in; a trailing *~# flags a node not responding etc.
    out = _run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%T"]).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _node_idle(node: str) -> bool:
    states = _node_states(node)
    if any(word in state for state in states for word in ("drain", "down")):
        _run(["scontrol", "update", f"nodename={node}", "state=resume"])
    return states == {"idle"}


def start_cluster(state_dir: Path, timeout: float = 60) -> SlurmCluster:
    """Configure and start munged, slurmctld and slurmd; return once the node is idle."""
    _check_can_start()
    node = socket.gethostname().split(".")[0]  # `hostname -s`, the name slurmd looks up
    cluster = SlurmCluster(node=node, state_dir=state_dir)
    try:
        for sub in ("slurmd", "slurmctld"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)
        SLURM_ETC.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("slurm.conf", slurm_conf(hardware_node_line(), node, state_dir)),
            ("gres.conf", gres_conf(node)),
        ):
            path = SLURM_ETC / name
            path.write_text(text)
            cluster.written.append(path)
        _start_munge(cluster)
        # -i: ignore state from an earlier run (none should exist in a fresh state_dir).
        _start(cluster, "slurmctld", ["slurmctld", "-D", "-i"])
        _wait("slurmctld", lambda: _run(["scontrol", "ping"]).returncode == 0, cluster, timeout)
        _start(cluster, "slurmd", ["slurmd", "-D"])
        _wait(f"node {node} idle", lambda: _node_idle(node), cluster, timeout)
    except (OSError, subprocess.SubprocessError) as err:
        stop_cluster(cluster)
        raise SlurmUnavailable(f"{type(err).__name__}: {err}") from err
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def _cancel_all_jobs(timeout: float = 20) -> None:
    # Every job on this throwaway cluster is a test's; a running one would outlive slurmd.
    job_ids = _run(["squeue", "--noheader", "--format=%i"]).stdout.split()
    if not job_ids:
        return
    _run(["scancel", *job_ids])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _run(["squeue", "--noheader"]).stdout.strip():
        time.sleep(0.3)


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel remaining jobs, stop the daemons we started and remove the files we wrote."""
    if "slurmctld" in cluster.processes and cluster.processes["slurmctld"].poll() is None:
        _cancel_all_jobs()
    # slurmd first: it stops its job steps while slurmctld can still be told.
    for name in ("slurmd", "slurmctld", "munged"):
        proc = cluster.processes.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for path in cluster.written:
        if path.exists() and path.read_text(errors="replace").startswith(MARKER):
            path.unlink()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running single-node cluster (partitions cpu and gpu, one GPU); skips where impossible."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as err:
        reason = f"cannot start a SLURM cluster on localhost: {err}"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} ({REQUIRE_ENV} is set)")
        pytest.skip(reason)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
