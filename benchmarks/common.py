"""Shared helpers of the benchmarks: the machine's description, JSON-line output, timing,
process-tree memory sampling, and Snakemake runs in scratch directories."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
# Where config.yaml's local datasets (article_local) keep their sources' folders.
SHARED_DATA = REPO.parent / "shared" / "data"


# JSON lines and scratch directories; CXR_BENCH_OUT moves them (e.g. for a trial run).
OUT = Path(os.environ.get("CXR_BENCH_OUT", REPO / "benchmarks" / "out"))
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# The results layout the figures were measured on; records without it (or with another) are
# from before the protocols layout of issue 10, and table.py says so.
LAYOUT = "protocols"


# --------------------------------------------------------------------------- machine


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def cpu_clock_ghz(info: dict[str, str] | None = None) -> tuple[float, str]:
    """Nominal clock in GHz and where it was read (cpufreq max, /proc/cpuinfo, BogoMIPS/2)."""
    info = _cpuinfo() if info is None else info
    cpufreq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if cpufreq.is_file():
        return int(cpufreq.read_text()) / 1e6, str(cpufreq)
    if info.get("cpu MHz"):
        return float(info["cpu MHz"]) / 1e3, "/proc/cpuinfo 'cpu MHz'"
    if info.get("bogomips"):
        return float(info["bogomips"]) / 2e3, "/proc/cpuinfo bogomips / 2"
    raise RuntimeError("cannot read the CPU clock: pass it with --clock-ghz")


def fp32_flops_per_cycle(info: dict[str, str] | None = None) -> tuple[int, str]:
    """Peak fp32 FLOP per cycle per core, from vendor, family and flags, and why.

    No register says this; it is what the vector units can do at best (FMA = 2 FLOP per lane):
    AVX-512 with two 512-bit FMA pipes 64, AVX2+FMA (two 256-bit FMA pipes) 32, AVX 16, SSE 8.
    AMD Zen 3/4 (family 25) run AVX-512 on 256-bit pipes, so 32 there; Zen 5 (26) has 512-bit.
    """
    info = _cpuinfo() if info is None else info
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags:
        if vendor == "AuthenticAMD" and family < 26:
            return 32, (
                f"AMD family {family} (Zen 3/4): AVX-512 executes on two 256-bit FMA pipes, "
                "2 x 8 lanes x 2 FLOP (assumption from the microarchitecture, not measured)"
            )
        return 64, "avx512f: two 512-bit FMA pipes, 2 x 16 lanes x 2 FLOP (assumption)"
    if {"avx2", "fma"} <= flags:
        return 32, "avx2+fma: two 256-bit FMA pipes, 2 x 8 lanes x 2 FLOP (assumption)"
    if "avx" in flags:
        return 16, "avx without FMA: 256-bit add + mul pipes (assumption)"
    return 8, "SSE only: 128-bit add + mul pipes (assumption)"


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, clock, memory, load, versions."""
    info = _cpuinfo()
    clock, clock_source = cpu_clock_ghz(info)
    per_cycle, per_cycle_source = fp32_flops_per_cycle(info)
    cores = len(os.sched_getaffinity(0))
    flags = set(info.get("flags", "").split())
    return {
        "cpu": info.get("model name", platform.processor()),
        "vendor": info.get("vendor_id"),
        "family": info.get("cpu family"),
        "model": info.get("model"),
        "cores": cores,
        "vector_flags": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_bf16"}),
        "clock_ghz": round(clock, 3),
        "clock_source": clock_source,
        "fp32_flop_per_cycle": per_cycle,
        "fp32_flop_per_cycle_source": per_cycle_source,
        "fp32_peak_gflops": round(cores * clock * per_cycle, 1),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def cpu_label(info: dict[str, Any] | None = None) -> str:
    """One line naming the CPU a figure was measured on (machine()'s dict, or this one)."""
    m = machine() if info is None else info
    return (
        f"{m['cpu']} (family {m['family']}, model {m['model']}), {m['cores']} cores at "
        f"{m['clock_ghz']} GHz, 1-min load {m['load_average_1min']}"
    )


# --------------------------------------------------------------------------- output


def emit(benchmark: str, record: dict[str, Any], out_dir: Path = OUT) -> Path:
    """Append one JSON line (with time and machine) to out_dir/<benchmark>.jsonl; print it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    line = {
        "benchmark": benchmark,
        "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "layout": LAYOUT,
        **record,
    }
    path = out_dir / f"{benchmark}.jsonl"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")
    print(f"[{benchmark}] wrote a JSON line to {path}")
    return path


def say(message: str) -> None:
    print(message, flush=True)


def median_time(func: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall seconds of `repeats` calls (the machine is shared: medians, not minima)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times), [round(t, 3) for t in times]


# --------------------------------------------------------------------------- memory


class PeakRSS:
    """Sample the summed RSS of a process and its descendants every `interval` s (psutil)."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak_tree = 0  # summed over the tree at one instant
        self.peak_single = 0  # the largest single process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            sizes = []
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    sizes.append(proc.memory_info().rss)
            if sizes:
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- snakemake


def snakemake(
    workdir: Path, *args: str, configs: tuple[Path, ...] = (), cores: int = 2,
    check: bool = True, sample_memory: bool = False, snakefile: Path = REPO / "Snakefile",
) -> dict[str, Any]:  # fmt: skip
    """Run `snakefile` (the repo's) in `workdir` on its config.yaml + `configs` (never in the
    repo); return wall seconds, return code, output, and with `sample_memory` the peak RSS."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        str(SNAKEMAKE), "-s", str(snakefile), "--directory", str(workdir),
        "--cores", str(cores), "--configfile", str(snakefile.parent / "config.yaml"),
        *(str(c) for c in configs), *args,
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    started = time.perf_counter()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        sampler = PeakRSS(proc.pid) if sample_memory else None
        with sampler or contextlib.nullcontext():
            output, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise RuntimeError(f"snakemake failed ({proc.returncode}):\n{output[-6000:]}")
    result = {"seconds": seconds, "returncode": proc.returncode, "output": output}
    if sampler:
        result["peak_rss_tree_mb"] = round(sampler.peak_tree / 2**20, 1)
        result["peak_rss_single_mb"] = round(sampler.peak_single / 2**20, 1)
    return result


def write_config(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=True))
    return path


_JOB = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
_WILDCARDS = re.compile(r"^\s*wildcards: (.*)$")
_REASON = re.compile(r"^\s*reason: (.*)$")
_JOBID = re.compile(r"^\s*jobid: (\d+)$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
TARGET_RULE = "all"


def planned_jobs(output: str, *, keep_target: bool = False) -> list[dict[str, Any]]:
    """The jobs a Snakemake output lists (a dry run plans them, a real run and its log run
    them): {"job": "rule" or "rule[wildcards]", "rule", "reason", "wildcards" (a dict),
    "jobid"}; the target rule `all` left out unless `keep_target`."""
    jobs: list[dict[str, Any]] = []
    for line in output.splitlines():
        if match := _JOB.match(line):
            name = match.group(1)
            jobs.append({"job": name, "rule": name, "reason": "", "wildcards": {}, "jobid": None})
        elif jobs and (match := _WILDCARDS.match(line)):
            jobs[-1]["job"] += f"[{match.group(1)}]"
            pairs = (item.partition("=") for item in match.group(1).split(", "))
            jobs[-1]["wildcards"] = {key: value for key, _, value in pairs}
        elif jobs and (match := _REASON.match(line)):
            jobs[-1]["reason"] = match.group(1)
        elif jobs and jobs[-1]["jobid"] is None and (match := _JOBID.match(line)):
            jobs[-1]["jobid"] = match.group(1)
    return [j for j in jobs if keep_target or j["rule"] != TARGET_RULE]


def finished_jobs(log_text: str) -> list[dict[str, Any]]:
    """The jobs a Snakemake log says finished (planned_jobs' dicts), the target rule `all`
    included, as Snakemake counts its jobs."""
    done = {m.group(1) for line in log_text.splitlines() if (m := _FINISHED.match(line.strip()))}
    return [j for j in planned_jobs(log_text, keep_target=True) if j["jobid"] in done]


def latest_log(workdir: Path) -> str:
    """The text of the latest Snakemake log of a run directory ("" where there is none)."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1].read_text() if logs else ""


def rule_benchmarks(workdir: Path) -> pd.DataFrame:
    """One row per Snakemake benchmark file under results/benchmarks: job, s, max_rss (MB)."""
    rows = []
    root = workdir / "results" / "benchmarks"
    for path in sorted(root.rglob("*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        job = str(path.relative_to(root).with_suffix(""))
        rows.append({"job": job, "rule": job.split("/")[0], "s": float(frame["s"].iloc[-1]),
                     "max_rss_mb": float(frame["max_rss"].iloc[-1])})  # fmt: skip
    return pd.DataFrame(rows, columns=["job", "rule", "s", "max_rss_mb"])


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def log_durations(log_text: str) -> pd.DataFrame:
    """Job start/finish from a Snakemake log (1 s resolution): covers rules without benchmark:."""
    stamp, starts, rows, current = None, {}, [], None
    for line in log_text.splitlines():
        if match := _STAMP.match(line.strip()):
            stamp = datetime.datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := _JOB.match(line):
            current = match.group(1)
        elif (match := _JOBID.match(line)) and current:
            starts[match.group(1)] = (current, stamp)
            current = None
        elif match := _FINISHED.match(line.strip()):
            rule, start = starts.get(match.group(1), (match.group(2), stamp))
            rows.append({"jobid": int(match.group(1)), "rule": rule,
                         "s": (stamp - start).total_seconds()})  # fmt: skip
    return pd.DataFrame(rows, columns=["jobid", "rule", "s"])


# --------------------------------------------------------------------------- settings


def repo_config(root: Path = REPO) -> dict:
    """config.yaml of the checkout at `root` (this repository by default), checked against that
    checkout's rules/config.schema.yaml with the schema's defaults filled in, as the workflow
    does (its chosen dataset's overrides not merged in: effective_config does that)."""
    return _validated(yaml.safe_load((root / "config.yaml").read_text()), root)


def _validated(config: dict, root: Path) -> dict:
    """`config` checked against the schema of the checkout at `root`, its defaults filled in
    (cxr.config.validate_schema, which the workflow's cxr.config.load runs)."""
    from cxr.config import validate_schema

    validate_schema(config, root / "rules" / "config.schema.yaml")
    return config


def dataset_config(name: str, root: Path = REPO) -> dict:
    """Config overrides that pick dataset `name`; a local dataset's roots (relative to the
    repository in config.yaml of the checkout at `root`) pointed at SHARED_DATA, since the runs
    happen in scratch directories."""
    from cxr.config import sources_at

    config: dict[str, Any] = {"dataset": name}
    configured = repo_config(root)
    sources = configured["datasets"][name].get("sources") or {}
    moved = sources_at(configured, name, SHARED_DATA)
    folders = {
        source: moved[source]["root"]
        for source, spec in sources.items()
        if "download" not in spec and not spec["root"].startswith("resources/")
    }
    missing = [folder for folder in folders.values() if not Path(folder).is_dir()]
    if missing:
        raise FileNotFoundError(f"dataset {name}: {missing} not found (see config.yaml)")
    if folders:
        config["datasets"] = {
            name: {"sources": {source: {"root": folder} for source, folder in folders.items()}}
        }
    return config


def effective_config(configs: tuple[Path, ...] = (), root: Path = REPO) -> dict:
    """config.yaml (of the checkout at `root`) with `configs` merged over it and the dataset's
    overrides applied, the schema's defaults filled in, as the workflow sees it."""
    from cxr.config import deep_merge, resolve

    config = yaml.safe_load((root / "config.yaml").read_text())
    for path in configs:
        config = deep_merge(config, yaml.safe_load(Path(path).read_text()) or {})
    return _validated(resolve(config), root)


def tf_import_seconds(repeats: int = 3) -> float:
    """Median seconds a fresh Python takes to import TensorFlow and Keras (each TF job pays it)."""
    code = "import tensorflow, keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    def once():
        subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)

    return median_time(once, repeats)[0]
