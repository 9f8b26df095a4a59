"""Metrics on cases small enough to check by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import f1_score, roc_auc_score

from cxr import metrics
from cxr.metrics import (
    binary_metrics,
    cluster_bootstrap,
    expected_calibration_error,
    false_positive_rate,
    proportion,
    roc_points,
)

# y=[0,0,1,1], p=[0.1,0.6,0.4,0.9], threshold 0.5: predictions [0,1,0,1] -> one of each cell.
# AUC: of the 4 (positive, negative) pairs only (0.4 vs 0.6) is misordered -> 3/4.
Y4 = [0, 0, 1, 1]
P4 = [0.1, 0.6, 0.4, 0.9]
G4 = ["a", "b", "c", "d"]


def _json_ok(obj) -> None:
    json.dumps(obj, allow_nan=False)


def _moderate_case(n_patients: int = 30, seed: int = 1):
    """2 images per patient, both with the patient's label; probs informative but noisy."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n_patients)
    y = np.repeat(label, 2)
    p = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, y.size), 0, 1)
    groups = np.repeat([f"pt{i}" for i in range(n_patients)], 2)
    return y, p, groups


def test_four_example_case_by_hand():
    m = binary_metrics(Y4, P4, G4, threshold=0.5, n_boot=200, seed=0)
    assert m["confusion_matrix"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert (m["n"], m["n_positive"], m["n_negative"], m["n_patients"]) == (4, 2, 2, 4)
    assert m["accuracy"]["value"] == 0.5
    assert (m["accuracy"]["k"], m["accuracy"]["n"]) == (2, 4)
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        assert m[name]["value"] == 0.5
    assert m["f1"]["value"] == 0.5  # 2tp / (2tp + fp + fn) = 2/4
    assert m["roc_auc"]["value"] == pytest.approx(0.75)
    # Brier = mean((p - y)^2) = (0.01 + 0.36 + 0.36 + 0.01) / 4
    assert m["brier"] == pytest.approx(0.185)
    # Cross-entropy = -mean(log p of the true class) = -(ln.9 + ln.4 + ln.4 + ln.9) / 4
    assert m["loss"] == pytest.approx(-(2 * np.log(0.9) + 2 * np.log(0.4)) / 4)
    _json_ok(m)


def test_wilson_interval_known_value():
    r = proportion(8, 10)
    assert r["value"] == 0.8 and r["method"] == "wilson"
    assert r["ci95"] == pytest.approx([0.4902, 0.9433], abs=1e-3)
    assert proportion(0, 0) == {"value": None, "k": 0, "n": 0, "ci95": None, "method": "wilson"}
    lo, hi = proportion(0, 5)["ci95"]
    assert lo == 0.0 and 0 < hi < 1
    with pytest.raises(ValueError, match="k <= n"):
        proportion(3, 2)


def test_perfect_separation():
    y = [0, 0, 0, 1, 1, 1]
    p = [0.05, 0.1, 0.2, 0.7, 0.8, 0.95]
    m = binary_metrics(y, p, ["a", "b", "c", "d", "e", "f"], threshold=0.5, n_boot=200, seed=0)
    assert m["roc_auc"]["value"] == 1.0
    lo, hi = m["roc_auc"]["ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    assert m["accuracy"]["value"] == 1.0 and m["f1"]["value"] == 1.0
    assert m["ppv"]["value"] == 1.0 and m["npv"]["value"] == 1.0


def test_single_class_is_undefined_not_a_crash():
    m = binary_metrics(
        [0, 0, 0], [0.2, 0.7, 0.1], ["a", "a", "b"], threshold=0.5, n_boot=50, seed=0
    )
    assert m["roc_auc"]["value"] is None
    assert m["roc_auc"]["ci95"] is None and m["roc_auc"]["bootstrap"]["n_valid"] == 0
    assert m["sensitivity"]["value"] is None and m["sensitivity"]["n"] == 0
    assert m["specificity"]["value"] == pytest.approx(2 / 3)
    assert m["ppv"]["value"] == 0.0  # one positive call, wrong
    assert m["npv"]["value"] == 1.0
    _json_ok(m)
    # No positive labels and no positive calls: F1 and PPV are undefined.
    m = binary_metrics([0, 0], [0.1, 0.2], ["a", "b"], threshold=0.5, n_boot=20, seed=0)
    assert m["f1"]["value"] is None and m["f1"]["ci95"] is None
    assert m["ppv"]["value"] is None
    assert roc_points([1, 1], [0.3, 0.9]) == {"fpr": [], "tpr": [], "thresholds": []}


def test_bootstrap_deterministic_and_contains_estimate():
    y, p, groups = _moderate_case()
    first = binary_metrics(y, p, groups, threshold=0.5, n_boot=500, seed=7)
    assert binary_metrics(y, p, groups, threshold=0.5, n_boot=500, seed=7) == first
    assert binary_metrics(y, p, groups, threshold=0.5, n_boot=500, seed=8) != first
    for name, point in [
        ("accuracy", first["accuracy"]["value"]),
        ("f1", first["f1"]["value"]),
        ("roc_auc", first["roc_auc"]["value"]),
    ]:
        ci = first[name]["ci95_patient_bootstrap" if name == "accuracy" else "ci95"]
        assert ci[0] < point < ci[1], name
    assert first["accuracy"]["bootstrap"]["n_valid"] == 500
    assert first["roc_auc"]["bootstrap"]["seed"] == 7
    # Patient order must not change the result (ids are sorted before resampling).
    perm = np.random.default_rng(0).permutation(y.size)
    assert (
        binary_metrics(y[perm], p[perm], groups[perm], threshold=0.5, n_boot=500, seed=7) == first
    )
    _json_ok(first)


def test_bootstrap_resamples_patients_not_images():
    # Patient A: 1 image, B: 3 images, C: 5 images. A replicate draws 3 patients, so its size
    # is a sum of 3 of {1, 3, 5}; resampling images would always give 9 and mix patients.
    groups = ["A"] + ["B"] * 3 + ["C"] * 5
    p = np.array([0.1] + [0.3] * 3 + [0.5] * 5)  # prob encodes the patient
    y = np.zeros(9, dtype=int)
    seen = []

    def record(yb, pb):
        seen.append(pb.copy())
        return 0.0

    cluster_bootstrap(y, p, groups, record, n_boot=300, seed=0)
    sizes = {len(pb) for pb in seen}
    assert sizes <= {a + b + c for a in (1, 3, 5) for b in (1, 3, 5) for c in (1, 3, 5)}
    assert len(sizes) > 3
    for pb in seen:  # each patient enters whole: counts are multiples of its image count
        assert np.count_nonzero(pb == 0.3) % 3 == 0 and np.count_nonzero(pb == 0.5) % 5 == 0


def test_bootstrap_skips_undefined_replicates():
    # Two patients, one all-healthy, one all-diseased: AUC is defined only when both are drawn,
    # which happens with probability 1/2 (image resampling would almost always get both).
    y = [0] * 5 + [1] * 5
    p = [0.2] * 5 + [0.8] * 5
    groups = ["h"] * 5 + ["d"] * 5
    r = cluster_bootstrap(y, p, groups, metrics._auc_stat, n_boot=1000, seed=3)
    assert 400 < r["n_valid"] < 600
    assert r["ci95"] == [1.0, 1.0]
    assert r["n_boot"] == 1000 and r["seed"] == 3
    assert r["method"] == "patient-level cluster bootstrap (percentile)"
    _json_ok(r)
    none = cluster_bootstrap(
        [0, 0], [0.1, 0.2], ["a", "b"], lambda yb, pb: float("nan"), n_boot=10, seed=0
    )
    assert none["ci95"] is None and none["n_valid"] == 0


def test_fast_bootstrap_statistics_match_sklearn():
    rng = np.random.default_rng(5)
    for _ in range(20):
        y = rng.integers(0, 2, 25)
        p = np.round(rng.random(25), 1)  # rounding creates ties
        if y.min() == y.max():
            continue
        assert metrics._auc_stat(y, p) == pytest.approx(roc_auc_score(y, p))
        f1 = metrics._f1_stat(0.5)(y, p)
        assert f1 == pytest.approx(f1_score(y, p >= 0.5, zero_division=0.0))
        assert metrics._accuracy_stat(0.5)(y, p) == pytest.approx(np.mean((p >= 0.5) == y))


def test_expected_calibration_error():
    # Bin (0.2, 0.3]: 4 images at 0.25, 1 positive; bin (0.7, 0.8]: 5 at 0.8, 4 positive.
    y = [1, 0, 0, 0] + [1, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.8] * 5
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # One image per bin: ECE = mean |y - p| = (0.15 + 0.65 + 0.55 + 0.05) / 4
    y, p = [0, 0, 1, 1], [0.15, 0.65, 0.45, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.35)
    # Same binning as sklearn's reliability curve.
    rng = np.random.default_rng(2)
    y, p = rng.integers(0, 2, 60), rng.random(60)
    true, pred = calibration_curve(y, p, n_bins=10)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    expected = np.sum(counts[counts > 0] / 60 * np.abs(true - pred))
    assert expected_calibration_error(y, p) == pytest.approx(expected)


def test_roc_auc_alone_is_binary_metrics_roc_auc():
    # P4 ranks the pairs (0.4 > 0.1), (0.4 < 0.6), (0.9 > 0.1), (0.9 > 0.6): 3 of 4 right.
    auc = metrics.roc_auc(Y4, P4, G4, n_boot=200, seed=0)
    assert auc["value"] == 0.75
    assert auc == binary_metrics(Y4, P4, G4, threshold=0.5, n_boot=200, seed=0)["roc_auc"]
    one_class = metrics.roc_auc([0, 0], [0.1, 0.2], ["a", "b"], n_boot=20, seed=0)
    assert one_class["value"] is None and one_class["ci95"] is None


def test_false_positive_rate():
    r = false_positive_rate([0.1, 0.5, 0.7, 0.2], threshold=0.5)
    assert (r["k"], r["n"], r["value"], r["threshold"]) == (2, 4, 0.5, 0.5)
    assert r["method"] == "wilson" and 0 < r["ci95"][0] < 0.5 < r["ci95"][1] < 1
    _json_ok(r)


def test_roc_points_json_safe():
    r = roc_points(Y4, [0.1, 0.6, 0.4, 1.0])
    _json_ok(r)
    assert r["fpr"][0] == 0.0 and r["tpr"][0] == 0.0
    assert r["fpr"][-1] == 1.0 and r["tpr"][-1] == 1.0
    assert r["thresholds"][0] > 1.0  # above every score, so `prob >= t` calls nothing positive
    assert len(r["fpr"]) == len(r["tpr"]) == len(r["thresholds"])


@pytest.mark.parametrize(
    ("y", "p", "groups", "message"),
    [
        ([0, 1], [0.2], ["a", "b"], "different lengths"),
        ([0, 1], [0.2, 0.3], ["a"], "groups and prob have different lengths"),
        ([0, 2], [0.2, 0.3], ["a", "b"], "only labels 0 and 1"),
        (["x", 1], [0.2, 0.3], ["a", "b"], "only labels 0 and 1"),
        ([0, 1], [0.2, 1.5], ["a", "b"], r"prob must be probabilities in \[0, 1\]; index 1"),
        ([0, 1], [0.2, float("nan")], ["a", "b"], "index 1"),
        ([], [], [], "empty"),
        ([0, 1], [0.2, 0.3], ["a", None], "missing value at index 1"),
    ],
)
def test_bad_inputs_raise(y, p, groups, message):
    with pytest.raises(ValueError, match=message):
        binary_metrics(y, p, groups, threshold=0.5, n_boot=10, seed=0)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="threshold"):
        binary_metrics(Y4, P4, G4, threshold=1.5, n_boot=10, seed=0)
    with pytest.raises(ValueError, match="n_boot"):
        binary_metrics(Y4, P4, G4, threshold=0.5, n_boot=0, seed=0)
    with pytest.raises(ValueError, match="prob"):
        false_positive_rate([-0.1], threshold=0.5)


def test_wilson_interval_contains_the_estimate_at_the_extremes():
    for n in (7, 12, 13, 28, 29, 121):
        for k in (0, n):
            result = proportion(k, n)
            assert result["ci95"][0] <= result["value"] <= result["ci95"][1], (k, n)


def test_bootstrap_difference_of_two_test_sets():
    from cxr.metrics import bootstrap_difference, statistics

    # Set a: 3 of 4 right at 0.5; set b: 1 of 4 right. Accuracy difference 0.75 - 0.25 = 0.5.
    a = ([1, 1, 0, 0], [0.9, 0.2, 0.1, 0.3], ["p1", "p2", "p3", "p4"])
    b = ([1, 1, 0, 0], [0.1, 0.2, 0.9, 0.3], ["q1", "q2", "q3", "q4"])
    accuracy = statistics(0.5)["accuracy"]
    result = bootstrap_difference(a, b, accuracy, n_boot=500, seed=1)
    assert result["value"] == pytest.approx(0.5)
    lo, hi = result["ci95"]
    assert -1 <= lo <= 0.5 <= hi <= 1 and result["n_valid"] == 500
    assert bootstrap_difference(a, b, accuracy, n_boot=500, seed=1) == result
    assert bootstrap_difference(a, a, accuracy, n_boot=200, seed=1)["value"] == 0
    sensitivity = statistics(0.5)["sensitivity"]
    assert bootstrap_difference(a, b, sensitivity, n_boot=50, seed=0)["value"] == pytest.approx(0.5)
    # One class only: AUC undefined, the difference too; no crash.
    one = ([1, 1], [0.2, 0.9], ["r1", "r2"])
    assert (
        bootstrap_difference(one, b, statistics(0.5)["roc_auc"], n_boot=20, seed=0)["value"] is None
    )
