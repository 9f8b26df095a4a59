"""Logging for `script:` entry points: everything goes to the rule's log file, and a problem a
user can fix ends the job with its message instead of a traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr.errors import CxrError


def run_logged(log_path: str | Path | None, func: Callable[..., Any], *args, **kwargs) -> Any:
    """Send stderr and logging to `log_path`, call `func`; on CxrError log it and exit 1.

    The process's file descriptor 2 goes to the log too, not only Python's sys.stderr: C++
    libraries (TensorFlow's absl logging) write there directly, and their lines belong in the
    job's log, not between Snakemake's own lines. The one-line error for the user still goes
    to the console the job was started with."""
    console = sys.__stderr__
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log_path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        console = os.fdopen(os.dup(2), "w", buffering=1)  # noqa: SIM115
        os.dup2(log_file.fileno(), 2)
        sys.stderr = log_file
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    try:
        return func(*args, **kwargs)
    except CxrError as error:
        logging.getLogger("cxr").error("%s", error)
        print(f"ERROR: {error}", file=console)
        sys.exit(1)


def run_script(sm: Any, main: Callable[..., Any]) -> Any:
    """Call `main` of a `script:` entry point by keyword, logged (run_logged): each named input
    a path, or a list of paths where the rule gives a list; outputs and params as dicts."""
    return run_logged(
        sm.log[0],
        main,
        inputs={k: v if isinstance(v, str) else list(v) for k, v in sm.input.items()},
        outputs=dict(sm.output.items()),
        params=dict(sm.params.items()),
    )


def run_tensorflow_job(sm: Any, job: str, *, module: str = "jobs", **extra_params: Any) -> Any:
    """Run the function `job` of `cxr.<module>` for a Snakemake `script:` object, by keyword.

    TensorFlow reads TF_ENABLE_ONEDNN_OPTS once, at import, so it is set here from the config's
    training.onednn (which every TensorFlow rule also has among its params, so that changing
    it reruns them) before the module (which imports TensorFlow) is imported; on a machine
    without a GPU, TensorFlow's CUDA probing errors are kept out of the log the same way
    (cxr.devices.quiet_tensorflow_on_cpu).

    A job whose resources include `require_gpu` (a profile sets it for the jobs it sends to GPU
    nodes: profiles/slurm) must see a GPU, whatever training.require_gpu says: a resource, not
    a param, so that it reruns nothing."""
    import importlib
    import os

    from cxr.devices import quiet_tensorflow_on_cpu

    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if sm.config["training"]["onednn"] else "0"
    params = {**dict(sm.params.items()), **extra_params}
    if sm.resources.get("require_gpu"):
        params["require_gpu"] = True
    else:
        # A job that must see a GPU keeps TensorFlow's log: it names what went wrong.
        quiet_tensorflow_on_cpu()
    jobs = importlib.import_module(f"cxr.{module}")
    return run_logged(
        sm.log[0],
        getattr(jobs, job),
        inputs=dict(sm.input.items()),
        outputs=dict(sm.output.items()),
        params=params,
        threads=sm.threads,
    )
