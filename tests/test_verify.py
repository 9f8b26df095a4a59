"""Verifying a run against its published numbers: what is measured, the tolerances per context,
the comparison's verdicts, and the command's table and exit status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from cxr import verify


def evaluation(accuracy: float, auc: float = 0.8) -> dict:
    cell = lambda v: {"value": v, "ci95": [v - 0.1, v + 0.05]}  # noqa: E731
    return {
        "test": {"n": 20, "n_positive": 8, "n_negative": 12, "accuracy": cell(accuracy),
                 "sensitivity": cell(0.5), "specificity": cell(0.75), "roc_auc": cell(auc)},
        "external": {"nih": {"n": 16, "positive_call_rate": {"value": 0.25, "ci95": [0.1, 0.5]}}},
    }  # fmt: skip


def measured(accuracy: float = 0.65, included: int = 126) -> dict:
    flow = {"total": 200, "included": included, "excluded": 200 - included,
            "sources": {"covid": {"included": 38}}}  # fmt: skip
    splits = {"patient": {"counts": {"test": {"images": 20, "patients": 15}}}}
    saliency = {"summary": {m: {"groups": [{"by": "all test images",
                                            "shares": {"border": {"mean": 0.4}}}]}
                            for m in ("gradcam", "occlusion")}}  # fmt: skip
    entry = {"protocol": "patient", "architecture": "MobileNet", "run": "seed0"}
    return verify.measure(
        flow=flow, split_summaries=splits, evaluations=[(entry, evaluation(accuracy))],
        audit={"trivial_feature_probe": {"auc": 0.99}, "border_probe": {"auc": 0.9}},
        saliency=[(entry, saliency)],
    )  # fmt: skip


def test_measure_names_each_quantity_with_its_kind():
    table = measured()
    assert table["curation.included"] == {"value": 126, "kind": "count"}
    assert table["split.patient.test.patients"]["value"] == 15
    accuracy = table["patient.MobileNet.seed0.test.accuracy"]
    assert accuracy == {"value": 0.65, "kind": "rate", "n": 20}
    assert table["patient.MobileNet.seed0.test.sensitivity"]["n"] == 8  # over the positives
    assert table["patient.MobileNet.seed0.test.roc_auc.ci95_low"]["kind"] == "auc"
    assert table["patient.MobileNet.seed0.external.nih.positive_call_rate"]["n"] == 16
    assert table["audit.border_probe.auc"]["kind"] == "probe"
    assert table["saliency.patient.MobileNet.seed0.occlusion.border_share"]["value"] == 0.4


def test_tolerances_per_context():
    assert verify.tolerance("count") == {"same_machine": 0, "other_cpu": 0, "gpu": 0}
    # Two images' worth of a rate over 20 on another CPU, three on a GPU.
    assert verify.tolerance("rate", 20) == {"same_machine": 0, "other_cpu": 0.1, "gpu": 0.15}
    assert verify.tolerance("auc")["same_machine"] == 0
    assert set(verify.WHY) == {"count", "rate", "auc", "probe", "share"}


def test_compare_passes_within_tolerance_and_names_every_difference():
    expected = verify.expected_file(measured(), dataset="synthetic", written_from={})
    rows = verify.compare(expected, measured(), "same_machine")
    assert {r.verdict for r in rows} == {"pass"} and not verify.failed(rows)
    # One image more right: within another CPU's tolerance (0.1), not within the same machine's.
    shifted = measured(accuracy=0.70)
    name = "patient.MobileNet.seed0.test.accuracy"
    assert not verify.failed(verify.compare(expected, shifted, "other_cpu"))
    bad = verify.failed(verify.compare(expected, shifted, "same_machine"))
    assert [r.name for r in bad] == [name, f"{name}.ci95_high", f"{name}.ci95_low"]
    assert bad[0].expected == 0.65
    # A count differs in every context; a quantity the run lacks fails; a new one alone does not.
    assert verify.failed(verify.compare(expected, measured(included=125), "gpu"))
    fewer = {k: v for k, v in measured().items() if not k.startswith("audit.")}
    missing = verify.failed(verify.compare(expected, fewer, "other_cpu"))
    assert {r.verdict for r in missing} == {"missing"} and len(missing) == 2
    more = {**measured(), "audit.new_probe.auc": {"value": 0.5, "kind": "probe"}}
    rows = verify.compare(expected, more, "other_cpu")
    assert not verify.failed(rows) and [r.verdict for r in rows].count("new") == 1
    text = verify.table_text(bad)
    assert text.splitlines()[0].split() == ["quantity", "value", "expected", "tolerance", "verdict"]
    assert "0.7000" in text and "0.6500" in text and "differs" in text
    with pytest.raises(ValueError, match="context 'laptop'"):
        verify.compare(expected, measured(), "laptop")


def run_verify(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/verify.py"), *args],
        cwd=cwd, capture_output=True, text=True,
    )  # fmt: skip


def test_the_command_writes_verifies_and_exits_non_zero_on_a_difference(tmp_path):
    results = tmp_path / "measured.json"
    results.write_text(json.dumps({"dataset": "synthetic", "quantities": measured()}))
    expected = tmp_path / "expected.json"
    written = run_verify("--measured", str(results), "--expected", str(expected), "--write",
                         cwd=tmp_path)  # fmt: skip
    assert written.returncode == 0 and expected.is_file(), written.stderr
    stored = json.loads(expected.read_text())
    assert stored["dataset"] == "synthetic" and stored["written_from"]["cpu"]
    same = run_verify("--measured", str(results), "--expected", str(expected),
                      "--context", "same_machine", cwd=tmp_path)  # fmt: skip
    assert same.returncode == 0 and '"verified": true' in same.stdout
    results.write_text(json.dumps({"dataset": "synthetic", "quantities": measured(0.7)}))
    differs = run_verify("--measured", str(results), "--expected", str(expected),
                         "--context", "same_machine", cwd=tmp_path)  # fmt: skip
    assert differs.returncode == 1
    assert "patient.MobileNet.seed0.test.accuracy" in differs.stdout and "differs" in differs.stdout
    # No run yet, or no expected file for the dataset: a clear message, status 2.
    absent = run_verify("--measured", str(tmp_path / "none.json"), cwd=tmp_path)
    assert absent.returncode == 2 and "run the workflow first" in absent.stderr
    other = run_verify("--measured", str(results), "--expected", str(tmp_path / "x.json"),
                       cwd=tmp_path)  # fmt: skip
    assert other.returncode == 2 and "--write" in other.stderr


def test_help_explains_the_contexts_and_tolerances():
    shown = run_verify("--help", cwd=REPO)
    assert shown.returncode == 0
    for word in ("same_machine", "other_cpu", "gpu", "--write", "images' worth"):
        assert word in shown.stdout, word


@pytest.mark.parametrize("dataset", ["synthetic", "article_local"])
def test_each_published_dataset_has_an_expected_file_for_every_quantity_kind(dataset):
    expected = json.loads((REPO / f"expected/{dataset}.json").read_text())
    assert expected["dataset"] == dataset and expected["written_from"]["commit"]
    kinds = {q["kind"] for q in expected["quantities"].values()}
    assert kinds == set(verify.WHY)
    assert all(set(q["tolerance"]) == set(verify.CONTEXTS) for q in expected["quantities"].values())
