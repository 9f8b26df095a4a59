"""cxr.logs.run_tensorflow_job hands a job its params by keyword, and a job whose resources say
`require_gpu` (set by profiles/slurm for the GPU rules) must see a GPU whatever the config says."""

from __future__ import annotations

import sys
import types

import pytest

from cxr.logs import run_tensorflow_job


class Named(dict):
    """What Snakemake's named lists (`snakemake.params`, `.resources`) offer here: items,
    `.get` and attribute access."""

    __getattr__ = dict.__getitem__


def fake_sm(**resources):
    return types.SimpleNamespace(
        input={"manifest": "results/shards/manifest.json"},
        output={"summary": "results/features/MobileNet/summary.json"},
        params=Named(architecture="MobileNet", training={"onednn": True}),
        resources=Named(resources),
        log=[None],  # no log file: run_logged would send this process's stderr there
        threads=2,
        config={"training": {"onednn": True}},
    )


@pytest.fixture
def calls(monkeypatch):
    """cxr.jobs replaced by a module whose job records what it is given (no TensorFlow)."""
    seen = []
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "")  # restored after the test
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the job may set it
    jobs = types.ModuleType("cxr.jobs")
    jobs.extract_features_job = lambda **kwargs: seen.append(kwargs)
    monkeypatch.setitem(sys.modules, "cxr.jobs", jobs)
    monkeypatch.setattr(sys.modules["cxr"], "jobs", jobs, raising=False)
    return seen


@pytest.mark.parametrize(
    ("resources", "config_requires", "expected"),
    [({}, False, False), ({}, True, True), ({"require_gpu": 1}, False, True),
     ({"require_gpu": 0}, False, False)],
)  # fmt: skip
def test_the_jobs_require_gpu_resource_reaches_the_job(calls, resources, config_requires, expected):
    sm = fake_sm(**resources)
    run_tensorflow_job(sm, "extract_features_job", require_gpu=config_requires)
    assert calls[0]["params"]["require_gpu"] is expected
    assert calls[0]["params"]["architecture"] == "MobileNet" and calls[0]["threads"] == 2


def test_a_cpu_job_hides_tensorflows_cuda_errors_a_gpu_job_keeps_them(calls, monkeypatch):
    import os

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    run_tensorflow_job(fake_sm(), "extract_features_job", require_gpu=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    run_tensorflow_job(fake_sm(require_gpu=1), "extract_features_job", require_gpu=False)
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # its log says why it found no GPU


JOB = """
import os, sys
sys.path.insert(0, {scripts!r})
from cxr.errors import CxrError
from cxr.logs import run_logged

def job():
    os.write(2, b"C++ library line\\n")
    print("python warning", file=sys.stderr)
    raise CxrError("the file x.csv is broken")

run_logged({log!r}, job)
"""


def test_the_log_gets_every_line_the_console_the_error(tmp_path):
    """Lines written to file descriptor 2 (TensorFlow's C++ logging) go to the job's log with
    Python's; the console the job was started with gets the one-line error only."""
    import subprocess

    from conftest import REPO

    log = tmp_path / "job.log"
    script = JOB.format(scripts=str(REPO / "scripts"), log=str(log))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == "ERROR: the file x.csv is broken", run.stderr
    text = log.read_text()
    assert "C++ library line" in text and "python warning" in text
    assert "the file x.csv is broken" in text
