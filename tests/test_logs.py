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
    )


@pytest.fixture
def calls(monkeypatch):
    """cxr.jobs replaced by a module whose job records what it is given (no TensorFlow)."""
    seen = []
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "")  # restored after the test
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
