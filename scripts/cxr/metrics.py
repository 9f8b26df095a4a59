"""Binary classification metrics for the evaluation JSON (label 1 = disease, prob = P(class 1)).

Every value returned is JSON-safe: plain floats/ints/lists, None where a metric is undefined
(never NaN or inf), and bootstrap intervals are reproducible for a given seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn.metrics import (
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)
from statsmodels.stats.proportion import proportion_confint

from cxr.io import finite_or_none

BOOTSTRAP_METHOD = "patient-level cluster bootstrap (percentile)"
AUC_METHOD = "sklearn roc_auc_score (Mann-Whitney); ci95: " + BOOTSTRAP_METHOD

Statistic = Callable[[np.ndarray, np.ndarray], float | None]

# ---------------------------------------------------------------- input checks


def _check_prob(prob: Any) -> np.ndarray:
    p = np.asarray(prob, dtype=float).ravel()
    if p.size == 0:
        raise ValueError("prob is empty: metrics need at least one prediction")
    bad = np.flatnonzero(~np.isfinite(p) | (p < 0) | (p > 1))
    if bad.size:
        raise ValueError(
            f"prob must be probabilities in [0, 1]; index {int(bad[0])} is {p[bad[0]]!r} "
            f"({bad.size} bad value(s)); pass P(class 1), not logits or percentages"
        )
    return p


def _check_labels(y_true: Any, n: int) -> np.ndarray:
    y = np.asarray(y_true).ravel()
    if y.size != n:
        raise ValueError(f"y_true and prob have different lengths ({y.size} vs {n})")
    try:
        ok = np.isin(y, [0, 1])
    except TypeError:  # e.g. strings compared with ints
        ok = np.zeros(y.size, dtype=bool)
    if not ok.all():
        found = sorted({str(v) for v in y[~ok]})[:5]
        raise ValueError(f"y_true must contain only labels 0 and 1; found {found}")
    return y.astype(int)


def _check_groups(groups: Any, n: int) -> np.ndarray:
    """Patient ids -> integer codes 0..G-1 (sorted ids, so row order does not matter)."""
    g = np.asarray(groups, dtype=object).ravel()
    if g.size != n:
        raise ValueError(f"groups and prob have different lengths ({g.size} vs {n})")
    codes, _ = pd.factorize(g, sort=True)
    if (codes < 0).any():
        raise ValueError(
            f"groups (patient ids) has a missing value at index {int(np.argmax(codes < 0))}"
        )
    return codes


def _check_inputs(y_true: Any, prob: Any) -> tuple[np.ndarray, np.ndarray]:
    p = _check_prob(prob)
    return _check_labels(y_true, p.size), p


def _check_threshold(threshold: float) -> float:
    if not (isinstance(threshold, int | float | np.number) and 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1]; got {threshold!r}")
    return float(threshold)


# ---------------------------------------------------------------- building blocks


def proportion(k: int, n: int, alpha: float = 0.05) -> dict:
    """k/n with a Wilson score interval (well behaved near 0, 1 and for small n)."""
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"proportion needs 0 <= k <= n; got k={k}, n={n}")
    if n == 0:
        return {"value": None, "k": k, "n": n, "ci95": None, "method": "wilson"}
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    value = k / n
    # The Wilson bounds are exactly 0 at k = 0 and 1 at k = n, but statsmodels' floating point
    # can land a hair inside (0.9999999999999999), leaving the estimate outside its interval.
    ci = [float(min(np.clip(lo, 0.0, 1.0), value)), float(max(np.clip(hi, 0.0, 1.0), value))]
    return {"value": value, "k": k, "n": n, "ci95": ci, "method": "wilson"}


def _resample_indices(codes: np.ndarray, n_boot: int, rng: np.random.Generator) -> list:
    """For each replicate, the image indices of G patients drawn with replacement."""
    n_groups = int(codes.max()) + 1
    order = np.argsort(codes, kind="stable")  # images grouped by patient
    sizes = np.bincount(codes, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups)).ravel()
    # Expand every drawn patient into its run of positions in `order`, all replicates at once.
    draw_sizes = sizes[draws]
    run_start = np.repeat(starts[draws] - np.cumsum(draw_sizes) + draw_sizes, draw_sizes)
    flat = order[run_start + np.arange(draw_sizes.sum())]
    per_boot = draw_sizes.reshape(n_boot, n_groups).sum(axis=1)
    return np.split(flat, np.cumsum(per_boot)[:-1])


def _percentile_interval(values: list[float], alpha: float) -> list[float] | None:
    """The (1 - alpha) percentile interval of bootstrap replicates; None when there are none."""
    if not values:
        return None
    lo, hi = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return [float(lo), float(hi)]


def cluster_bootstrap(
    y_true: Any,
    prob: Any,
    groups: Any,
    statistic: Statistic,
    *,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> dict:
    """Percentile CI of statistic(y, p), resampling patients (all their images) with replacement.

    Images of one patient are correlated, so resampling images would give too narrow an
    interval. Replicates where `statistic` returns None or a non-finite value (e.g. AUC on one
    class) are skipped; "n_valid" says how many were used.
    """
    y, p = _check_inputs(y_true, prob)
    return patient_bootstrap(
        groups, lambda idx: statistic(y[idx], p[idx]), p.size, n_boot=n_boot, seed=seed,
        alpha=alpha,
    )  # fmt: skip


def patient_bootstrap(
    groups: Any,
    statistic: Callable[[np.ndarray], float | None],
    n: int,
    *,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> dict:
    """cluster_bootstrap for any statistic of the rows (not only of labels and probabilities,
    e.g. a rank correlation of two scores): `statistic` gets the row indices of a replicate, of
    `n` rows whose patients are `groups`."""
    codes = _check_groups(groups, n)
    if not (isinstance(n_boot, int | np.integer) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer so intervals are reproducible; got {seed!r}")
    rng = np.random.default_rng(seed)
    values = []
    for idx in _resample_indices(codes, int(n_boot), rng):
        value = finite_or_none(statistic(idx))
        if value is not None:
            values.append(value)
    ci = _percentile_interval(values, alpha)
    return {
        "ci95": ci,
        "n_boot": int(n_boot),
        "n_valid": len(values),
        "method": BOOTSTRAP_METHOD,
        "seed": int(seed),
    }


def mean_with_interval(values: Any, patients: Any, *, n_boot: int, seed: int) -> dict:
    """Mean of the finite `values` (one per image) with a percentile interval resampling
    patients (patient_bootstrap); None and n 0 where no value is finite."""
    values, patients = np.asarray(values, dtype=float), np.asarray(patients)
    keep = np.isfinite(values)
    values, patients = values[keep], patients[keep]
    if len(values) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    boot = patient_bootstrap(
        patients, lambda idx: float(np.mean(values[idx])), len(values), n_boot=n_boot, seed=seed
    )
    return {"mean": float(values.mean()), "ci95": boot["ci95"], "n": int(len(values))}


def expected_calibration_error(y_true: Any, prob: Any, n_bins: int = 10) -> float:
    """ECE: size-weighted mean |observed rate - mean prob| over equal-width bins of P(class 1)."""
    y, p = _check_inputs(y_true, prob)
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    # sklearn has no ECE and calibration_curve drops the bin counts, so this repeats its
    # uniform binning (searchsorted on the inner edges) to agree with a reliability plot.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.searchsorted(edges[1:-1], p)
    total = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=y, minlength=n_bins)
        - np.bincount(bins, weights=p, minlength=n_bins)
    )
    # sum_b (n_b/N) * |sum_y/n_b - sum_p/n_b| = sum_b |sum_y - sum_p| / N
    return float(gap[total > 0].sum() / p.size)


# ------------------------------------------------- statistics used inside the bootstrap
# sklearn's metric functions spend ~1 ms per call on input validation; 1000 replicates x 3
# metrics would take seconds per model. These are the same formulas on already-checked
# arrays (tests compare them with sklearn), returning None when undefined.


def _accuracy_stat(threshold: float) -> Statistic:
    def stat(y: np.ndarray, p: np.ndarray) -> float:
        return float(np.mean((p >= threshold) == (y == 1)))

    return stat


def _f1_stat(threshold: float) -> Statistic:
    def stat(y: np.ndarray, p: np.ndarray) -> float | None:
        pred = p >= threshold
        pos = y == 1
        tp = np.count_nonzero(pred & pos)
        denom = np.count_nonzero(pred) + np.count_nonzero(pos)  # 2tp + fp + fn
        return 2.0 * tp / denom if denom else None

    return stat


def _auc_stat(y: np.ndarray, p: np.ndarray) -> float | None:
    """Mann-Whitney form of ROC AUC (ties count 1/2), as roc_auc_score computes it."""
    pos = y == 1
    n_pos = int(np.count_nonzero(pos))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(p)  # average ranks handle ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------- public metrics


def binary_metrics(
    y_true: Any,
    prob: Any,
    groups: Any,
    *,
    threshold: float,
    n_boot: int,
    seed: int,
) -> dict:
    """All metrics of one model on one test set, with Wilson and patient-bootstrap intervals.
    The threshold, bootstrap replicates and seed are config's (evaluation, seed): no defaults
    here, so that a caller cannot fall back on other values than the run's."""
    y, p = _check_inputs(y_true, prob)
    codes = _check_groups(groups, p.size)
    threshold = _check_threshold(threshold)
    pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    n_pos, n_neg = tp + fn, tn + fp

    def boot(stat: Statistic) -> dict:
        return cluster_bootstrap(y, p, codes, stat, n_boot=n_boot, seed=seed)

    accuracy = proportion(tp + tn, p.size)
    acc_boot = boot(_accuracy_stat(threshold))
    accuracy["ci95_patient_bootstrap"] = acc_boot["ci95"]
    accuracy["bootstrap"] = acc_boot

    f1_value = f1_score(y, pred, labels=[0, 1], zero_division=np.nan)
    f1_boot = boot(_f1_stat(threshold))

    return {
        "n": int(p.size),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_patients": int(codes.max()) + 1,
        "threshold": threshold,
        "loss": finite_or_none(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "calibration_error": expected_calibration_error(y, p, n_bins=10),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "accuracy": accuracy,
        "sensitivity": proportion(tp, tp + fn),
        "specificity": proportion(tn, tn + fp),
        "ppv": proportion(tp, tp + fp),
        "npv": proportion(tn, tn + fn),
        "f1": {"value": finite_or_none(f1_value), "ci95": f1_boot["ci95"], "bootstrap": f1_boot},
        "roc_auc": roc_auc(y, p, groups, n_boot=n_boot, seed=seed),
    }


def roc_auc(y_true: Any, prob: Any, groups: Any, *, n_boot: int, seed: int) -> dict:
    """ROC AUC with its patient-bootstrap interval: binary_metrics' `roc_auc`, and the leakage
    probes' score, which needs no threshold. Value and interval None with one class only."""
    y, p = _check_inputs(y_true, prob)
    codes = _check_groups(groups, p.size)
    both_classes = bool((y == 1).any() and (y == 0).any())
    value = roc_auc_score(y, p) if both_classes else None
    boot = cluster_bootstrap(y, p, codes, _auc_stat, n_boot=n_boot, seed=seed)
    return {
        "value": finite_or_none(value),
        "ci95": boot["ci95"],
        "method": AUC_METHOD,
        "bootstrap": boot,
    }


def _rate_stat(threshold: float, label: int) -> Statistic:
    """Sensitivity (label 1) or specificity (label 0) at `threshold`; None without that class."""

    def stat(y: np.ndarray, p: np.ndarray) -> float | None:
        chosen = y == label
        if not chosen.any():
            return None
        return float(np.mean((p[chosen] >= threshold).astype(int) == label))

    return stat


def statistics(threshold: float) -> dict[str, Statistic]:
    """The metrics compared between protocols, by the names binary_metrics gives them."""
    return {
        "accuracy": _accuracy_stat(threshold),
        "sensitivity": _rate_stat(threshold, 1),
        "specificity": _rate_stat(threshold, 0),
        "roc_auc": _auc_stat,
    }


def bootstrap_difference(
    a: tuple[Any, Any, Any],
    b: tuple[Any, Any, Any],
    statistic: Statistic,
    *,
    n_boot: int,
    seed: int,
    alpha: float = 0.05,
) -> dict:
    """statistic(a) - statistic(b) for two independent test sets, each (y, prob, patients),
    with a percentile interval from resampling the patients of each set independently."""
    ya, pa = _check_inputs(a[0], a[1])
    yb, pb = _check_inputs(b[0], b[1])
    ca, cb = _check_groups(a[2], pa.size), _check_groups(b[2], pb.size)
    value_a, value_b = finite_or_none(statistic(ya, pa)), finite_or_none(statistic(yb, pb))
    value = None if value_a is None or value_b is None else value_a - value_b
    rng = np.random.default_rng(seed)
    draws_a = _resample_indices(ca, int(n_boot), rng)
    draws_b = _resample_indices(cb, int(n_boot), rng)
    values = []
    for ia, ib in zip(draws_a, draws_b, strict=True):
        sa, sb = (
            finite_or_none(statistic(ya[ia], pa[ia])),
            finite_or_none(statistic(yb[ib], pb[ib])),
        )
        if sa is not None and sb is not None:
            values.append(sa - sb)
    ci = _percentile_interval(values, alpha)
    return {
        "value": value,
        "ci95": ci,
        "n_boot": int(n_boot),
        "n_valid": len(values),
        "method": "difference of two independent patient-level bootstraps, percentile interval",
        "seed": int(seed),
    }


def false_positive_rate(prob: Any, *, threshold: float) -> dict:
    """Share of an all-healthy set called diseased (prob >= threshold), with a Wilson interval."""
    p = _check_prob(prob)
    threshold = _check_threshold(threshold)
    return proportion(int(np.count_nonzero(p >= threshold)), p.size) | {"threshold": threshold}


def roc_points(y_true: Any, prob: Any) -> dict:
    """ROC curve points for plotting; empty lists when only one class is present."""
    y, p = _check_inputs(y_true, prob)
    if np.unique(y).size < 2:
        return {"fpr": [], "tpr": [], "thresholds": []}
    fpr, tpr, thresholds = roc_curve(y, p, pos_label=1)
    # roc_curve's first threshold is +inf (nothing called positive); the next float above the
    # highest score means the same for `prob >= t` and stays valid JSON.
    thresholds = thresholds.copy()
    thresholds[~np.isfinite(thresholds)] = np.nextafter(p.max(), np.inf)
    return {
        "fpr": [float(v) for v in fpr],
        "tpr": [float(v) for v in tpr],
        "thresholds": [float(v) for v in thresholds],
    }


__all__ = [
    "binary_metrics",
    "cluster_bootstrap",
    "expected_calibration_error",
    "false_positive_rate",
    "proportion",
    "roc_points",
]
