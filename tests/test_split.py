"""Patient-disjoint splits and the article's image-level counterfactual."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import curation_rules, synthetic_sources
from cxr.curate import curate
from cxr.errors import ConfigError
from cxr.split import image_level_counterfactual, split_patients

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@pytest.fixture(scope="module")
def images(synthetic_root):
    return curate(synthetic_sources(synthetic_root), curation_rules(), seed=2020)[0]


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


# ---------------------------------------------------------------- protocols' splits


def test_image_level_split_ignores_patients_and_has_exact_fractions(images):
    from cxr.split import split_images

    splits = split_images(images, FRACTIONS, seed=3)
    pool = splits[splits["split"] != "external"]
    n = len(pool)
    counts = pool["split"].value_counts()
    assert counts["test"] == round(0.2 * n) and counts["val"] == round(0.1 * n)
    assert counts["train"] == n - round(0.2 * n) - round(0.1 * n)
    # No grouping: with patients of several images some straddle train and test.
    per_patient = pool.groupby("patient")["split"].nunique()
    assert (per_patient > 1).any()
    # Stratified by label: the test split's share of each class is the pool's, within 1 image.
    for label, part in pool.groupby("label"):
        expected = 0.2 * len(part)
        assert abs((part["split"] == "test").sum() - expected) <= 1, label
    assert (splits.loc[images.sort_values("id")["role"].values == "external", "split"]
            == "external").all()  # fmt: skip
    assert split_images(images, FRACTIONS, seed=3).equals(splits)


def test_learning_curve_subsets_are_nested_and_leave_test_alone(images):
    from cxr.split import subsample_patients

    splits = split_patients(images, FRACTIONS, seed=3)
    test_patients = set(splits.loc[splits["split"] == "test", "patient"])
    train_patients = splits.loc[splits["split"] == "train"].groupby("y")["patient"].nunique()
    for seed in (0, 1):
        previous: set = set()
        for fraction in (0.25, 0.5, 0.75, 1.0):
            rows = subsample_patients(splits, fraction, seed)
            patients = set(rows["patient"])
            assert previous <= patients, (seed, fraction)  # nested
            assert not patients & test_patients
            assert set(rows["split"]) == {"train"}
            per_label = rows.groupby("y")["patient"].nunique()
            for y, total in train_patients.items():
                assert per_label[y] == max(1, int(np.ceil(fraction * total))), (fraction, y)
            previous = patients
        assert previous == set(splits.loc[splits["split"] == "train", "patient"])
    # Other seeds draw other subsets.
    a = set(subsample_patients(splits, 0.25, 0)["patient"])
    b = set(subsample_patients(splits, 0.25, 1)["patient"])
    assert a != b


def test_marked_images_are_removed_with_their_reason(images):
    from cxr.split import remove_marked, split_protocol

    frame = images.copy()
    frame["mark_area"] = 0.0
    frame["mark_box"] = ""
    ids = list(frame["id"].iloc[:3])
    frame.loc[frame["id"] == ids[0], ["mark_area", "mark_box"]] = [0.004, "1 2 30 12"]
    frame.loc[frame["id"] == ids[1], ["mark_area", "mark_box"]] = [0.0001, "5 5 7 7"]  # speck
    kept, removed = remove_marked(frame, min_area=0.0005, ids=[ids[2]])
    assert list(removed["id"]) == [ids[0], ids[2]]
    assert list(removed["reason"]) == ["coloured annotation mark", "listed in marks.ids"]
    assert "0.400% of the image" in removed["detail"].iloc[0]
    assert len(kept) + len(removed) == len(frame)
    settings = {"protocol": "no_marks", "method": "patient", "fractions": FRACTIONS, "seed": 3}
    splits, removed, summary = split_protocol(frame, settings, {"min_area": 0.0005, "ids": []})
    assert len(splits) + len(removed) == len(frame) and list(removed["id"]) == [ids[0]]
    assert summary["removed"]["count"] == 1 and summary["patients_in_several_splits"] == 0
    assert ids[0] not in set(splits["id"])


def test_split_protocol_summary_counts_the_article_leak(images):
    from cxr.split import split_protocol

    settings = {"protocol": "article", "method": "image", "fractions": FRACTIONS, "seed": 3}
    splits, removed, summary = split_protocol(images, settings, None)
    test = splits[splits["split"] == "test"]
    train = set(splits.loc[splits["split"] == "train", "patient"])
    assert summary["test_images_whose_patient_is_in_train"] == test["patient"].isin(train).sum()
    assert summary["test_images_whose_patient_is_in_train"] > 0
    assert removed.empty and "image_level_counterfactual" not in summary
