"""The article's optimism over repeated splits: per-repeat metrics, the corrected resampled t
interval of Nadeau and Bengio, the paired differences and the spread of each protocol."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cxr.repeats import corrected_interval, optimism_over_repeats, repeat_metrics, spread, verdict


def predictions(repeat: int, labels: list[int], probs: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"repeat": repeat, "label": labels, "probability": probs,
                         "patient": [f"p{i}" for i in range(len(labels))]})  # fmt: skip


def test_repeat_metrics_by_hand():
    frame = pd.concat([
        predictions(0, [1, 1, 0, 0], [0.9, 0.4, 0.2, 0.6]),  # TP FN TN FP
        predictions(1, [1, 1, 0, 0], [0.9, 0.8, 0.1, 0.3]),  # all right
    ])  # fmt: skip
    table = repeat_metrics(frame, threshold=0.5)
    assert list(table["repeat"]) == [0, 1]
    assert table.loc[0, "accuracy"] == 0.5 and table.loc[1, "accuracy"] == 1.0
    assert table.loc[0, "sensitivity"] == 0.5 and table.loc[0, "specificity"] == 0.5
    assert table.loc[0, "roc_auc"] == 0.75  # pairs (0.9, 0.4) x (0.2, 0.6): 3 of 4 ordered
    assert table.loc[1, "n_test"] == 4 and table.loc[1, "n_test_patients"] == 4


def test_a_test_split_without_one_class_has_no_auc():
    table = repeat_metrics(predictions(0, [1, 1], [0.9, 0.2]), threshold=0.5)
    assert table.loc[0, "roc_auc"] is None and table.loc[0, "specificity"] is None


def test_corrected_interval_by_hand():
    d = np.array([0.1, 0.2, 0.3, 0.0, 0.4])
    result = corrected_interval(d, test_train_ratio=0.25)
    s2 = d.var(ddof=1)  # 0.025
    half = 2.7764451051977987 * math.sqrt((1 / 5 + 0.25) * s2)  # t(0.975, 4)
    assert result["value"] == pytest.approx(0.2)
    assert result["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    plain = 2.7764451051977987 * math.sqrt(s2 / 5)
    assert half > plain  # the correction widens the naive interval
    assert corrected_interval(d, 0.0)["ci95"] == pytest.approx([0.2 - plain, 0.2 + plain])


def test_corrected_interval_with_too_few_repeats():
    assert corrected_interval(np.array([0.3]), 0.2) == {
        "value": 0.3, "ci95": None, "k": 1, "method": "corrected resampled t"}  # fmt: skip
    assert corrected_interval(np.array([]), 0.2)["value"] is None


def test_spread_keeps_the_own_split():
    result = spread(pd.Series([0.7, 0.9, 0.8, None]))
    assert result["n"] == 3 and result["own_split"] == 0.7
    assert result["mean"] == pytest.approx(0.8) and result["min"] == 0.7 and result["max"] == 0.9


def _table(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"repeat": range(len(values)), "n_test": 10, "n_test_patients": 8,
                         "accuracy": values, "sensitivity": values, "specificity": values,
                         "roc_auc": values})  # fmt: skip


def test_paired_optimism_and_share():
    article = _table([0.9, 0.8, 0.95, 0.85])
    primary = _table([0.7, 0.8, 0.75, 0.65])
    counts = {p: [{"counts": {"test": {"images": 20}, "train": {"images": 80}}}] * 4
              for p in ("article", "patient")}  # fmt: skip
    result = optimism_over_repeats(
        {"article": {"A": article}, "patient": {"A": primary}}, counts,
        article="article", primary="patient",
    )  # fmt: skip
    assert result["test_train_ratio"] == 0.25
    entry = result["architectures"]["A"]
    optimism = entry["optimism"]["accuracy"]
    assert optimism["differences"] == pytest.approx([0.2, 0.0, 0.2, 0.2])
    assert optimism["value"] == pytest.approx(0.15)
    assert optimism["share_article_higher"] == 0.75
    assert entry["paired_repeats"] == 4
    assert entry["spread"]["article"]["accuracy"]["own_split"] == 0.9
    assert verdict(optimism) in {"optimistic", "cannot tell"}


def test_noise_alone_cannot_be_told_from_zero():
    """Differences centred on 0: the interval covers 0 and the verdict says so."""
    rng = np.random.default_rng(0)
    article = _table(list(0.8 + rng.normal(0, 0.05, 20)))
    primary = _table(list(0.8 + rng.normal(0, 0.05, 20)))
    counts = {p: [{"counts": {"test": {"images": 20}, "train": {"images": 70}}}]
              for p in ("article", "patient")}  # fmt: skip
    result = optimism_over_repeats(
        {"article": {"A": article}, "patient": {"A": primary}}, counts,
        article="article", primary="patient",
    )  # fmt: skip
    assert verdict(result["architectures"]["A"]["optimism"]["accuracy"]) == "cannot tell"
    shifted = optimism_over_repeats(
        {"article": {"A": _table(list(article["accuracy"] + 0.2))}, "patient": {"A": primary}},
        counts, article="article", primary="patient",
    )  # fmt: skip
    assert verdict(shifted["architectures"]["A"]["optimism"]["accuracy"]) == "optimistic"


def test_a_protocol_alone_gets_its_spread_only():
    result = optimism_over_repeats(
        {"patient": {"A": _table([0.7, 0.8])}}, {}, article="article", primary="patient"
    )
    assert "optimism" not in result["architectures"]["A"]
    assert result["architectures"]["A"]["spread"]["patient"]["accuracy"]["n"] == 2
