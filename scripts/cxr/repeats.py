"""The article's optimism over many splits: each repeated split's test metrics, the paired
difference article - patient-disjoint per repeat, its mean with an interval that accounts for
the repeats sharing images, how often the article's protocol looks better, and how far each
protocol's own metric moves from split to split.

Why the interval is not the plain t interval of the K differences: the repeats reuse the same
images (each is a train/test split of one small set), so their differences are positively
correlated and their spread understates the uncertainty of the mean. Nadeau & Bengio (2003,
"Inference for the generalization error", Machine Learning 52) correct the variance of the
mean of K resampled differences from (1/K) s^2 to (1/K + n_test/n_train) s^2, and use
Student's t with K - 1 degrees of freedom. No maintained library implements the correction
(scipy and statsmodels give the plain t test), so the two lines are written here; scipy gives
the t quantile.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cxr import metrics

COMPARED = ("accuracy", "sensitivity", "specificity", "roc_auc")


def repeat_metrics(predictions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """One row per repeat: its test metrics (COMPARED; None where the test split lacks a
    class), test images and patients. `predictions`: repeat, label, probability, patient."""
    stats = metrics.statistics(threshold)
    rows = []
    for repeat, part in predictions.groupby("repeat", sort=True):
        y, p = part["label"].to_numpy(int), part["probability"].to_numpy(float)
        row = {"repeat": int(repeat), "n_test": len(part),
               "n_test_patients": int(part["patient"].nunique())}  # fmt: skip
        for name in COMPARED:
            value = stats[name](y, p)
            row[name] = None if value is None or not math.isfinite(value) else float(value)
        rows.append(row)
    return pd.DataFrame(rows, columns=["repeat", "n_test", "n_test_patients", *COMPARED])


def corrected_interval(
    differences: np.ndarray, test_train_ratio: float, level: float = 0.95
) -> dict:
    """Mean of K paired differences with the corrected resampled t interval of Nadeau and
    Bengio: mean +- t_{K-1} sqrt((1/K + n_test/n_train) s^2). None below 2 differences."""
    from scipy import stats

    d = np.asarray([x for x in differences if x is not None and math.isfinite(x)], float)
    k = len(d)
    if k == 0:
        return {"value": None, "ci95": None, "k": 0, "method": "corrected resampled t"}
    mean = float(d.mean())
    if k < 2:
        return {"value": mean, "ci95": None, "k": k, "method": "corrected resampled t"}
    variance = (1.0 / k + test_train_ratio) * float(d.var(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, k - 1)) * math.sqrt(variance)
    return {
        "value": mean,
        "ci95": [mean - half, mean + half],
        "k": k,
        "sd": float(d.std(ddof=1)),
        "method": "corrected resampled t (Nadeau & Bengio 2003), n_test/n_train "
        f"{test_train_ratio:.3f}",
    }


def spread(values: pd.Series) -> dict:
    """How a protocol's metric moves over its repeats: mean, SD, range, 2.5-97.5 percentiles,
    and the value of repeat 0 (the protocol's own split)."""
    v = values.dropna().to_numpy(float)
    if len(v) == 0:
        return {"n": 0}
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
        "min": float(v.min()),
        "max": float(v.max()),
        "p2_5": float(np.percentile(v, 2.5)),
        "p97_5": float(np.percentile(v, 97.5)),
        "own_split": None if pd.isna(values.iloc[0]) else float(values.iloc[0]),
    }


def optimism_over_repeats(
    per_repeat: dict[str, dict[str, pd.DataFrame]],
    split_counts: dict[str, list[dict]],
    *,
    article: str,
    primary: str,
) -> dict:
    """Per architecture: each protocol's spread per metric and, where both protocols have
    repeats, the paired differences article - primary per repeat index, their corrected mean
    and interval, and the share of repeats in which the article's protocol scores higher.
    `per_repeat`: protocol -> architecture -> repeat_metrics; `split_counts`: protocol -> its
    split_repeats summary's repeats (for n_test / n_train)."""
    ratios = []
    for protocol in (article, primary):
        for entry in split_counts.get(protocol, []):
            counts = entry["counts"]
            test = (counts.get("test") or {}).get("images") or 0
            train = (counts.get("train") or {}).get("images") or 0
            if train:
                ratios.append(test / train)
    ratio = float(np.mean(ratios)) if ratios else 0.0
    result: dict = {"article": article, "primary": primary, "compared": list(COMPARED),
                    "test_train_ratio": ratio, "architectures": {}}  # fmt: skip
    architectures = sorted({a for tables in per_repeat.values() for a in tables})
    for arch in architectures:
        entry: dict = {"spread": {}}
        for protocol, tables in per_repeat.items():
            if arch in tables:
                table = tables[arch]
                entry["spread"][protocol] = {
                    "repeats": len(table),
                    **{name: spread(table[name]) for name in COMPARED},
                }
        a, b = per_repeat.get(article, {}).get(arch), per_repeat.get(primary, {}).get(arch)
        if a is not None and b is not None:
            paired = a.merge(b, on="repeat", suffixes=("_article", "_primary"))
            entry["paired_repeats"] = len(paired)
            entry["optimism"] = {}
            for name in COMPARED:
                diff = paired[f"{name}_article"] - paired[f"{name}_primary"]
                diff = diff.astype(float)
                valid = diff.dropna()
                entry["optimism"][name] = {
                    **corrected_interval(valid.to_numpy(), ratio),
                    "share_article_higher": (float((valid > 0).mean()) if len(valid) else None),
                    "differences": [None if pd.isna(x) else float(x) for x in diff],
                }
        result["architectures"][arch] = entry
    return result


def verdict(optimism: dict) -> str:
    """What the interval says: 'optimistic' (all above 0), 'pessimistic' (all below), or
    'cannot tell' (covers 0, or no interval)."""
    ci = optimism.get("ci95")
    if not ci:
        return "cannot tell"
    if ci[0] > 0:
        return "optimistic"
    if ci[1] < 0:
        return "pessimistic"
    return "cannot tell"
