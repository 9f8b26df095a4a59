"""README's findings block (scripts/findings_table.py) comes from expected/article_local.json."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import findings_table  # noqa: E402


def _quantity(value: float, *, low: float | None = None, high: float | None = None, n=None):
    out = {"": {"value": value, "n": n}}
    if low is not None:
        out[".ci95_low"] = {"value": low}
        out[".ci95_high"] = {"value": high}
    return out


def _expected() -> dict:
    q: dict = {}

    def put(key, value, low=None, high=None, n=None):
        for suffix, entry in _quantity(value, low=low, high=high, n=n).items():
            q[key + suffix] = entry

    for arch in findings_table.ARCHITECTURES:
        put(f"article.{arch}.seed0.test.accuracy", 0.9, 0.8, 0.95)
        put(f"article.{arch}.seed0.test.roc_auc", 0.97, 0.9, 1.0)
        put(f"patient.{arch}.seed0.test.roc_auc", 0.71, 0.5, 0.88)
        put(f"patient.{arch}.seed0.external.nih.positive_call_rate", 0.25, 0.1, 0.4, n=20)
    put("audit.border_probe.auc", 0.95)
    put("audit.trivial_feature_probe.auc", 0.5)
    for source, n in (("covid", 68), ("kermany", 70), ("nih", 20)):
        put(f"curation.{source}.included", n)
    return {
        "quantities": q,
        "written_from": {"commit": "abc", "cpu": "CPU X", "date": "2020-01-02"},
    }


def test_the_block_shows_each_number_with_its_interval_and_stamp():
    block = findings_table.findings(_expected())
    assert block.startswith(findings_table.START) and block.endswith(findings_table.END)
    assert (
        "| MobileNet | 90% (80%–95%) | 0.97 (0.90–1.00) | 0.71 (0.50–0.88) | 25% (10%–40%) of 20 |"
        in block
    )
    assert "ROC AUC 0.95" in block and "statistics, 0.50" in block
    assert "commit `abc` on 2020-01-02 on CPU X" in block
    assert "68 COVID-19 and 70 Kermany images; 20 NIH adults" in block


def test_a_missing_quantity_is_named():
    expected = _expected()
    del expected["quantities"]["patient.ResNet50.seed0.test.roc_auc"]
    with pytest.raises(SystemExit, match="patient.ResNet50.seed0.test.roc_auc"):
        findings_table.findings(expected)


def test_readme_shows_the_current_block(tmp_path):
    check = [sys.executable, str(REPO / "scripts/findings_table.py"), "--check"]
    result = subprocess.run([*check, str(REPO / "README.md")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and the check fails on a README whose numbers were edited by hand.
    edited = tmp_path / "README.md"
    edited.write_text(
        (REPO / "README.md").read_text().replace("| MobileNet | ", "| MobileNet | 1", 1)
    )
    assert subprocess.run([*check, str(edited)], capture_output=True).returncode == 1
