"""Do the scores follow the disease? The Spearman correlation between a model's P(disease) and
the experts' severity scores of the COVID-19 images (the collection's covid-severity-scores.csv,
read by cxr.annotations), on the test split, on the external sources and on both, with a
percentile interval that resamples patients (cxr.metrics.cluster_bootstrap). A model that
learned the disease should score the more severe cases higher; one that learned where an image
comes from need not. Plain pandas and scipy, no TensorFlow."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from cxr import metrics

SCORES = {
    "geographic_mean": "extent of lung involvement (0-8)",
    "opacity_mean": "degree of opacity (0-6)",
}
SUBSETS = ("test", "external", "together")
# Fewer scored images than this and no correlation is computed: a rank correlation on 3 points
# is one of a handful of values.
MIN_IMAGES = 5


def spearman(x, y) -> float | None:
    """Spearman's rho of x and y; None where it is undefined (fewer than 3 points, or either
    constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(stats.spearmanr(x, y).statistic)


def scored_predictions(predictions: pd.DataFrame, annotated: pd.DataFrame) -> pd.DataFrame:
    """The disease images of `predictions` (test and external) that have severity scores, with
    their scores: one row per image."""
    # Tables read as text (cxr.io.read_table): an empty cell is a missing score.
    scores = annotated[["id", *SCORES]].copy()
    for score in SCORES:
        scores[score] = pd.to_numeric(scores[score].replace("", np.nan))
    scores = scores.dropna(subset=list(SCORES), how="all")
    predictions = predictions.assign(
        label=pd.to_numeric(predictions["label"]),
        probability=pd.to_numeric(predictions["probability"]),
    )
    disease = predictions[predictions["label"] == 1]
    return disease.merge(scores, on="id", how="inner", validate="one_to_one")


def correlation(frame: pd.DataFrame, score: str, *, n_boot: int, seed: int) -> dict:
    """rho between P(disease) and `score` on the rows of `frame` that have it, with its
    patient-bootstrap interval."""
    rows = frame.dropna(subset=[score])
    n, patients = len(rows), int(rows["patient"].nunique())
    rho = spearman(rows[score], rows["probability"]) if n >= MIN_IMAGES else None
    result = {"n": n, "patients": patients, "rho": rho, "ci95": None}
    if rho is None:
        result["note"] = (
            f"not computed: {n} scored images (at least {MIN_IMAGES} needed)"
            if n < MIN_IMAGES
            else "not computed: the scores or the model's probabilities are all equal"
        )
        return result
    x, y = rows[score].to_numpy(), rows["probability"].to_numpy()
    boot = metrics.patient_bootstrap(
        rows["patient"].to_numpy(), lambda idx: spearman(x[idx], y[idx]), n,
        n_boot=n_boot, seed=seed,
    )  # fmt: skip
    result["ci95"] = boot["ci95"]
    result["n_valid"] = boot["n_valid"]
    return result


def verdict(subsets: dict) -> dict:
    """Per architecture, from both test and external images together."""
    rule = (
        "'follows the disease' if, on the test and external images together, the 95% interval "
        "of rho lies above 0 for either severity score; 'against the disease' if it lies below "
        "0 for either; 'no evidence either way' if every interval covers 0; 'not computed' "
        f"with fewer than {MIN_IMAGES} scored images"
    )
    together = subsets["together"]
    intervals = [together[s]["ci95"] for s in SCORES if together[s]["ci95"]]
    if not intervals:
        level = "not computed"
    elif any(lo > 0 for lo, _ in intervals):
        level = "follows the disease"
    elif any(hi < 0 for _, hi in intervals):
        level = "against the disease"
    else:
        level = "no evidence either way"
    return {"verdict": level, "rule": rule}


def severity_correlations(
    predictions: dict[str, pd.DataFrame],
    annotated: pd.DataFrame,
    *,
    runs: dict[str, str],
    n_boot: int,
    seed: int,
) -> dict:
    """Per architecture (its run `runs[arch]`'s predictions), rho of P(disease) against each
    severity score on the test images, the external ones and both, with intervals and a
    verdict; and the images scored."""
    result: dict = {
        "scores": SCORES,
        "subsets": {
            "test": "the test split's disease images",
            "external": "the external sources' disease images (e.g. a later snapshot)",
            "together": "both",
        },
        "min_images": MIN_IMAGES,
        "architectures": {},
    }
    for arch, frame in predictions.items():
        scored = scored_predictions(frame, annotated)
        parts = {
            "test": scored[scored["split"] == "test"],
            "external": scored[scored["split"] == "external"],
            "together": scored,
        }
        subsets = {
            name: {score: correlation(part, score, n_boot=n_boot, seed=seed) for score in SCORES}
            for name, part in parts.items()
        }
        result["architectures"][arch] = {
            "run": runs[arch],
            "subsets": subsets,
            **verdict(subsets),
            "images": [
                {
                    "id": row["id"],
                    "split": row["split"],
                    "source": row["source"],
                    "patient": row["patient"],
                    "probability": float(row["probability"]),
                    **{s: None if pd.isna(row[s]) else float(row[s]) for s in SCORES},
                }
                for row in scored.to_dict("records")
            ],
        }
    return result
