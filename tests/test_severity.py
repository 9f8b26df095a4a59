"""Do the scores follow the disease: Spearman's rho against the severity scores, with patient
bootstrap intervals, per subset, and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr import severity


def predictions(n_test: int, n_external: int, scores, *, per_patient: int = 1) -> pd.DataFrame:
    rows = []
    for k, p in enumerate(scores):
        split = "test" if k < n_test else "external"
        rows.append({"split": split, "id": f"covid/{k}.png", "patient": f"p{k // per_patient}",
                     "source": "covid" if split == "test" else "covid_later", "label": 1,
                     "probability": p})  # fmt: skip
    rows.append({"split": "test", "id": "normal/0.png", "patient": "h0", "source": "kermany",
                 "label": 0, "probability": 0.9})  # fmt: skip
    return pd.DataFrame(rows)


def annotated(values) -> pd.DataFrame:
    return pd.DataFrame({
        "id": [f"covid/{k}.png" for k in range(len(values))],
        "geographic_mean": values,
        "opacity_mean": [v / 2 for v in values],
    })  # fmt: skip


def test_spearman_is_undefined_for_constant_or_tiny_inputs():
    assert severity.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert severity.spearman([1, 2, 3], [5, 5, 5]) is None
    assert severity.spearman([1, 2], [1, 2]) is None


def test_scores_that_rise_with_severity_follow_the_disease():
    values = list(range(12))
    frame = predictions(6, 6, [0.3 + 0.05 * v for v in values])
    result = severity.severity_correlations(
        {"DenseNet121": frame}, annotated(values), runs={"DenseNet121": "seed0"},
        n_boot=200, seed=0,
    )  # fmt: skip
    entry = result["architectures"]["DenseNet121"]
    together = entry["subsets"]["together"]["geographic_mean"]
    assert together["rho"] == pytest.approx(1.0) and together["n"] == 12
    assert together["ci95"][0] > 0
    assert entry["subsets"]["test"]["geographic_mean"]["n"] == 6
    assert entry["verdict"] == "follows the disease"
    # The healthy image has no severity and is not scored.
    assert len(entry["images"]) == 12 and all(i["id"].startswith("covid/") for i in entry["images"])


def test_unrelated_scores_give_no_evidence_and_few_images_are_not_computed():
    rng = np.random.default_rng(3)
    values = list(rng.permutation(30))
    frame = predictions(15, 15, list(rng.random(30)))
    result = severity.severity_correlations(
        {"MobileNet": frame}, annotated(values), runs={"MobileNet": "seed0"}, n_boot=300, seed=0
    )
    entry = result["architectures"]["MobileNet"]
    low, high = entry["subsets"]["together"]["geographic_mean"]["ci95"]
    assert low < 0 < high
    assert entry["verdict"] == "no evidence either way"
    few = severity.severity_correlations(
        {"MobileNet": predictions(2, 2, [0.1, 0.2, 0.3, 0.4])}, annotated([1, 2, 3, 4]),
        runs={"MobileNet": "seed0"}, n_boot=50, seed=0,
    )["architectures"]["MobileNet"]  # fmt: skip
    assert few["subsets"]["together"]["geographic_mean"]["rho"] is None
    assert "at least 5" in few["subsets"]["together"]["geographic_mean"]["note"]
    assert few["verdict"] == "not computed"


def test_the_interval_resamples_patients_not_images():
    # Two images per patient with the same score: resampling images would pretend to twice the
    # data; the patient bootstrap's interval is wider than the image bootstrap's.
    values = [v for v in range(10) for _ in range(2)]
    probs = [0.5 + 0.02 * v + (0.3 if v % 3 == 0 else 0.0) for v in values]
    frame = predictions(20, 0, probs, per_patient=2)
    by_patient = severity.correlation(
        frame.merge(annotated(values), on="id"), "geographic_mean", n_boot=500, seed=0
    )
    unpaired = frame.assign(patient=[f"i{k}" for k in range(len(frame))])
    by_image = severity.correlation(
        unpaired.merge(annotated(values), on="id"), "geographic_mean", n_boot=500, seed=0
    )
    assert by_patient["patients"] == 10 and by_image["patients"] == 20
    width = lambda c: c["ci95"][1] - c["ci95"][0]  # noqa: E731
    assert width(by_patient) > width(by_image)
