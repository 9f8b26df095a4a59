"""NVIDIA GPUs of this machine, found without importing TensorFlow (which takes seconds and
would run at every DAG evaluation): what the rules' `gpu` resource and the TensorFlow jobs'
log level are decided from."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

# The NVIDIA driver lists one folder per GPU here; its device files are /dev/nvidia<k>.
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")
DEVICES = Path("/dev")
DEVICE_FILE = re.compile(r"nvidia\d+")


def visible_gpus(
    environ: Mapping[str, str] | None = None,
    driver_gpus: Path | None = None,
    dev: Path | None = None,
) -> int:
    """How many NVIDIA GPUs a process started here could use: those the driver lists (or
    /dev/nvidia<k> files, in containers without /proc/driver), limited by CUDA_VISIBLE_DEVICES
    when it is set ("" or "-1" hide them all)."""
    environ = os.environ if environ is None else environ
    driver_gpus = DRIVER_GPUS if driver_gpus is None else driver_gpus
    dev = DEVICES if dev is None else dev
    try:
        found = len([p for p in driver_gpus.iterdir() if p.is_dir()])
    except OSError:
        found = 0
    if not found:
        try:
            found = len([p for p in dev.iterdir() if DEVICE_FILE.fullmatch(p.name)])
        except OSError:
            found = 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return found
    named = [d for d in visible.split(",") if d.strip()]
    # CUDA stops at the first invalid index: "-1" (or "") hides every device.
    valid = []
    for device in named:
        if device.strip().lstrip("-").isdigit() and int(device) < 0:
            break
        valid.append(device)
    return min(found, len(valid))


def quiet_tensorflow_on_cpu(environ: dict[str, str] | None = None) -> bool:
    """Before TensorFlow is imported on a machine with no visible GPU: hide its C++ log lines
    below FATAL, where TensorFlow's CUDA build reports "failed call to cuInit" as an error
    (it looks for a GPU that is not there, and such lines read as failures in a job log).
    Where a GPU is visible, or the user set TF_CPP_MIN_LOG_LEVEL, nothing changes, so a GPU job
    still logs what TensorFlow found (docs/facts.md). Returns whether it quietened."""
    environ = os.environ if environ is None else environ
    if "TF_CPP_MIN_LOG_LEVEL" in environ or visible_gpus(environ):
        return False
    environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return True
