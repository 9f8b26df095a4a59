"""TensorFlow runtime setup: thread pools, op determinism, the devices it sees, the GPU check and
the Keras dtype policy a fit runs under.

TF_ENABLE_ONEDNN_OPTS is read once, when TensorFlow is imported, and this module imports it:
the Snakemake entry point must set the variable in `os.environ` before importing `cxr.runtime`
(or anything that imports TensorFlow). `configure_tensorflow` only reports its value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from cxr.errors import ConfigError, CxrError

logger = logging.getLogger(__name__)


def list_devices() -> dict[str, list[str]]:
    """The physical CPU and GPU devices TensorFlow sees."""
    return {
        kind: [device.name for device in tf.config.list_physical_devices(kind.upper())]
        for kind in ("cpu", "gpu")
    }


def configure_tensorflow(threads: int, *, deterministic: bool = True) -> dict[str, Any]:
    """Set TF's thread pools and op determinism; return what TF runs on, for the run's record.

    Threads can only be set before TensorFlow's runtime starts (first op); later calls keep
    the current pools and say so. Determinism cannot be switched off again in a process.
    """
    if threads < 0:
        raise ConfigError(f"threads must be >= 0 (0 = TensorFlow's default), got {threads}")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning(
            "TensorFlow is already running; keeping its thread pools (intra %d, inter %d)",
            tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads(),
        )
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        # Allocate GPU memory as needed, not all of it at once, so that two jobs can share a
        # GPU (profiles/default still runs one GPU job at a time). Only possible before the
        # runtime starts, like the threads.
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            logger.warning("TensorFlow is already running; GPU memory growth left as it is")
    return {
        "devices": list_devices(),
        "threads": {
            "requested": threads,
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
        },
        "op_determinism": deterministic,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        # None when unset: TensorFlow then picks (off on AMD CPUs, see docs/facts.md).
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    }


def require_gpu(devices: dict[str, Any]) -> None:
    """Raise CxrError when no GPU is visible (`devices`: configure_tensorflow's result or its
    "devices" entry), naming the node and what TensorFlow saw."""
    seen = devices.get("devices", devices)
    if not seen.get("gpu"):
        raise CxrError(
            f"a GPU is required but TensorFlow {tf.__version__} on node {platform.node()} sees "
            f"none (devices: {seen}; CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}; built with CUDA: "
            f"{tf.test.is_built_with_cuda()}). On a GPU node, install requirements-gpu.txt "
            "(or use envs/tf-gpu.yaml) and check that SLURM gave the job a GPU; to train on the "
            "CPU instead, set training.require_gpu: false and remove require_gpu from the "
            "profile's set-resources"
        )


@contextlib.contextmanager
def dtype_policy(mixed: bool) -> Iterator[None]:
    """Build and fit under Keras's mixed_float16 policy (`mixed`) or float32; restore after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
