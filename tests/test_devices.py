"""GPUs found without TensorFlow: what the TensorFlow jobs' `gpu` resource and their log level
are decided from."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr.devices import quiet_tensorflow_on_cpu, visible_gpus


@pytest.fixture
def machine(tmp_path: Path):
    """A stand-in /proc/driver/nvidia/gpus and /dev with `n` GPUs."""

    def make(n: int, *, driver: bool = True) -> dict:
        gpus, dev = tmp_path / "gpus", tmp_path / "dev"
        gpus.mkdir(exist_ok=True)
        dev.mkdir(exist_ok=True)
        for k in range(n):
            if driver:
                (gpus / f"0000:{k:02d}:00.0").mkdir()
            (dev / f"nvidia{k}").touch()
        (dev / "nvidiactl").touch()  # not a GPU
        (dev / "nvidia-uvm").touch()
        return {"driver_gpus": gpus, "dev": dev}

    return make


def test_no_gpu_machine(machine):
    assert visible_gpus({}, **machine(0)) == 0


def test_gpus_the_driver_lists(machine):
    assert visible_gpus({}, **machine(4)) == 4


def test_device_files_where_the_driver_folder_is_missing(machine):
    where = machine(2, driver=False)
    assert visible_gpus({}, where["driver_gpus"] / "absent", where["dev"]) == 2


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("", 0), ("-1", 0), ("0", 1), ("0,1", 2), ("1,-1,0", 1), ("0,1,2,3,4,5", 4),
     ("GPU-8a1c", 1)],
)  # fmt: skip
def test_cuda_visible_devices_limits_them(machine, setting, expected):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": setting}, **machine(4)) == expected


def test_quiet_on_a_machine_without_gpu(monkeypatch, machine):
    import cxr.devices as devices

    where = machine(0)
    monkeypatch.setattr(devices, "DRIVER_GPUS", where["driver_gpus"])
    monkeypatch.setattr(devices, "DEVICES", where["dev"])
    environ: dict[str, str] = {"CUDA_VISIBLE_DEVICES": ""}
    assert quiet_tensorflow_on_cpu(environ)
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    # What the user set stays.
    environ = {"CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "1"}
    assert not quiet_tensorflow_on_cpu(environ)
    assert environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_a_gpu_machine_keeps_tensorflows_log(monkeypatch, machine):
    import cxr.devices as devices

    where = machine(1)
    monkeypatch.setattr(devices, "DRIVER_GPUS", where["driver_gpus"])
    monkeypatch.setattr(devices, "DEVICES", where["dev"])
    environ: dict[str, str] = {}
    assert not quiet_tensorflow_on_cpu(environ)
    assert "TF_CPP_MIN_LOG_LEVEL" not in environ


@pytest.mark.slow  # plans the workflow with Snakemake
def test_tensorflow_jobs_take_no_gpu_where_none_is_visible(tmp_path, monkeypatch):
    """With no GPU visible, the TensorFlow jobs ask for no `gpu`, so profiles/default's one-GPU
    limit does not make them wait for each other: they run side by side up to --cores."""
    from scratch import snakemake

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides any GPU of the machine running this
    run = snakemake("-n", "--forceall", workdir=tmp_path)
    rules = ("extract_features", "train_models", "explain_model", "probe_borders")
    tf_jobs = [b for b in run.stdout.split("\n\n") if any(f"rule {r}:" in b for r in rules)]
    assert len(tf_jobs) >= 4
    for block in tf_jobs:
        assert "gpu=0" in block, block
