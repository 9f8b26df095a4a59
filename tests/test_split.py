"""Patient-disjoint splits and the article's image-level counterfactual."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import synthetic_sources
from cxr.curate import Rules, curate
from cxr.errors import ConfigError
from cxr.split import image_level_counterfactual, split_patients

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@pytest.fixture(scope="module")
def images(synthetic_root):
    return curate(synthetic_sources(synthetic_root), Rules(), seed=2020)[0]


def test_no_patient_in_two_splits(images):
    splits = split_patients(images, FRACTIONS, seed=3)
    assert (splits.groupby("patient")["split"].nunique() == 1).all()
    assert set(splits["split"]) == {"train", "val", "test", "external"}
    assert len(splits) == len(images)


def test_each_split_has_both_labels_and_about_the_fractions(images):
    splits = split_patients(images, FRACTIONS, seed=3)
    trained = splits[splits["split"] != "external"]
    for name in ("train", "val", "test"):
        assert set(trained.loc[trained["split"] == name, "label"]) == {"covid", "normal"}, name
    share = trained.groupby("split")["patient"].nunique() / trained["patient"].nunique()
    assert abs(share["test"] - 0.2) < 0.08 and abs(share["train"] - 0.7) < 0.1


def test_split_is_seeded(images):
    a = split_patients(images, FRACTIONS, seed=3)
    b = split_patients(images, FRACTIONS, seed=3)
    c = split_patients(images, FRACTIONS, seed=4)
    assert a.equals(b) and not a["split"].equals(c["split"])


@pytest.mark.parametrize("fractions", [{"train": 0.7, "val": 0.2, "test": 0.2},
                                       {"train": 1.0, "val": 0.0, "test": 0.0}])  # fmt: skip
def test_bad_fractions_are_a_config_error(images, fractions):
    with pytest.raises(ConfigError, match="sum to 1"):
        split_patients(images, fractions, seed=0)


def test_counterfactual_counts_patients_on_both_sides():
    # 10 patients with 2 images each: an image split of 50% can put a patient on both sides.
    frame = pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(20)],
            "patient": [f"p{k // 2}" for k in range(20)],
            "y": [k // 2 % 2 for k in range(20)],
            "role": "train",
        }
    )
    result = image_level_counterfactual(frame, 0.5, seed=0)
    train_test_shared = result["patients_in_train_and_test"]
    assert 0 < train_test_shared <= 10
    assert result["test_images_whose_patient_is_in_train"] == train_test_shared
    assert result["patients_total"] == 10
