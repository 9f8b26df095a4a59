"""Attention on the lungs (cxr.lung_attention) and the model randomisation check
(cxr.randomisation), on maps drawn by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cxr import lung_attention, randomisation

LABELS = {"positive": "covid", "negative": "normal"}


def lungs_left_half(side: int = 8) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    mask[:, : side // 2] = True
    return mask


def test_measures_of_a_map_inside_and_outside_the_lungs():
    lungs = np.stack([lungs_left_half()] * 3)
    maps = np.zeros((3, 8, 8))
    maps[0, 2, 1] = 1.0  # all inside
    maps[1, 2, 6] = 3.0  # all outside
    maps[1, 2, 1] = 1.0
    peaks = np.array([[1.5 / 8, 2.5 / 8], [6.5 / 8, 2.5 / 8], [np.nan, np.nan]])
    got = lung_attention.lung_measures(maps, peaks, lungs)
    assert got["share"][:2] == pytest.approx([1.0, 0.25])
    assert np.isnan(got["share"][2])  # a map with no positive mass points nowhere
    assert got["area"] == pytest.approx([0.5] * 3)
    assert got["excess"][:2] == pytest.approx([0.5, -0.25])
    assert got["hit"][:2].tolist() == [1.0, 0.0] and np.isnan(got["hit"][2])


def test_fit_mask_maps_a_stored_mask_onto_the_maps_grid():
    mask = lungs_left_half(4)
    assert lung_attention.fit_mask(mask, 8).sum() == 32
    assert lung_attention.fit_mask(mask, 8)[:, :4].all()


def frame_and_maps(inside: bool, n: int = 12):
    frame = pd.DataFrame({
        "id": [f"covid/{k}.png" for k in range(n)] + ["kermany/x.jpeg"],
        "split": ["test"] * 6 + ["external"] * (n - 6) + ["test"],
        "source": ["covid"] * 6 + ["covid_later"] * (n - 6) + ["kermany"],
        "label": [1] * n + [0], "patient": [f"p{k // 2}" for k in range(n)] + ["h"],
        "outcome": ["TP"] * 6 + ["external TP"] * (n - 6) + ["TN"],
    })  # fmt: skip
    rng = np.random.default_rng(0)
    maps = rng.random((n + 1, 8, 8)) * 0.1
    column = 1 if inside else 6
    maps[:, 3, column] += 1.0
    peaks = np.tile([[(column + 0.5) / 8, 3.5 / 8]], (n + 1, 1))
    lungs = {f"covid/{k}.png": lungs_left_half() for k in range(n)}  # the healthy one has none
    return frame, {"occlusion": (maps, peaks)}, lungs


@pytest.mark.parametrize(("inside", "verdict"), [(True, "attention on the lungs"),
                                                 (False, "outside the lungs")])  # fmt: skip
def test_verdict_and_groups(inside, verdict):
    frame, maps, lungs = frame_and_maps(inside)
    result = lung_attention.lung_statistics(frame, maps, lungs, labels=LABELS, n_boot=200, seed=0)
    assert result["images"] == 12 and result["patients"] == 6 and result["mapped"] == 13
    method = result["methods"]["occlusion"]
    assert method["verdict"] == verdict
    groups = {(g["by"], g["value"]): g for g in method["groups"]}
    assert groups[("all annotated images", "")]["images"] == 12
    assert groups[("split", "external")]["images"] == 6
    assert groups[("source", "covid_later")]["patients"] == 3
    assert ("class", "normal") not in groups  # no healthy image has a lung region
    overall = groups[("all annotated images", "")]
    assert overall["area"]["mean"] == pytest.approx(0.5)
    assert overall["hit"]["mean"] == (1.0 if inside else 0.0)
    assert len(result["per_image"]) == 12


def test_no_annotated_image_is_not_computed():
    frame, maps, _ = frame_and_maps(True)
    result = lung_attention.lung_statistics(frame, maps, {}, labels=LABELS, n_boot=50, seed=0)
    assert result["images"] == 0
    assert result["methods"]["occlusion"]["verdict"] == "not computed"


def test_randomisation_summary_reads_unchanged_maps_as_barely_changed():
    rng = np.random.default_rng(1)
    trained = rng.random((6, 8, 8))
    same = trained * 2 + 0.01 * rng.random((6, 8, 8))
    other = rng.random((6, 8, 8))
    assert randomisation.summarise(randomisation.rank_correlations(trained, same))["verdict"] == (
        "maps barely change"
    )
    changed = randomisation.summarise(randomisation.rank_correlations(trained, other))
    assert changed["verdict"] == "maps depend on the model" and changed["images"] == 6
    flat = randomisation.rank_correlations(trained[:2], np.zeros((2, 8, 8)))
    assert np.isnan(flat).all()
    assert randomisation.summarise(flat)["verdict"] == "not computed"


def test_sanity_sample_is_fixed_and_in_order():
    ids = [f"img{k}" for k in range(30)]
    picked = randomisation.sanity_sample(ids, 5, seed=2020)
    assert len(picked) == 5 and picked == sorted(picked)
    assert picked == randomisation.sanity_sample(list(ids), 5, seed=2020)
    assert randomisation.sanity_sample(ids, None, 0) == list(range(30))
    assert randomisation.sanity_sample(ids, 0, 0) == []
