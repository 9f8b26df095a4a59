"""The audit's pure parts on hand-checkable inputs: verdict rules and near-duplicate pairing."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest

from cxr.audit import near_duplicates, verdict_for_auc, verdicts


@pytest.mark.parametrize(
    "probe, verdict",
    [
        ({"auc": 0.8, "ci95": [0.6, 0.95]}, "flag"),
        ({"auc": 0.75, "ci95": [0.51, 0.9]}, "flag"),  # the thresholds are inclusive
        ({"auc": 0.8, "ci95": [0.45, 0.95]}, "warn"),  # high, but chance not ruled out
        ({"auc": 0.9, "ci95": None}, "warn"),
        ({"auc": 0.6, "ci95": [0.4, 0.8]}, "warn"),
        ({"auc": 0.59, "ci95": [0.4, 0.8]}, "pass"),
        ({"auc": None, "ci95": None}, "not computed"),
        ({}, "not computed"),
    ],
)
def test_verdict_for_auc(probe, verdict):
    result = verdict_for_auc(probe, flag=0.75, warn=0.6)
    assert result["verdict"] == verdict
    assert result["rule"] == (
        "flag if AUC >= 0.75 and the 95% interval's lower bound > 0.5; warn if AUC >= 0.6; "
        "else pass"
    )


def audit(**changes) -> dict:
    """An audit result of a confounded data set with a patient-level split."""
    base = {
        "patient_overlap": {"patients_in_several_splits": 0},
        "image_level_counterfactual": {
            "patients_in_train_and_test": 5,
            "patients_total": 20,
            "test_images_whose_patient_is_in_train": 7,
            "test_images": 10,
        },
        "near_duplicates": {
            "pairs": [],
            "max_distance": 16,
            "hash": "imagehash.phash, 256 bits",
            "exact_duplicates_removed": 3,
        },
        "trivial_feature_probe": {"auc": 0.9, "ci95": [0.8, 0.97]},
        "border_probe": None,
        "label_source": [
            {"label": "covid", "source": "covid", "split": "test", "images": 4, "patients": 2},
            {"label": "normal", "source": "kermany", "split": "test", "images": 6, "patients": 6},
        ],
    }
    return {**base, **changes}


def test_verdicts_of_a_confounded_data_set():
    out = verdicts(audit(), flag=0.75, warn=0.6)
    assert [(v["check"], v["verdict"]) for v in out] == [
        ("patient overlap between splits", "pass"),
        ("near-duplicate images across splits", "pass"),
        ("trivial-feature probe", "flag"),  # no border probe: no verdict for it
        ("label vs source", "flag"),
    ]
    assert "would have put 5 of 20 patients in both train and test" in out[0]["text"]
    assert "(7 of 10 test images" in out[0]["text"]
    assert out[1]["rule"].startswith("warn if any cross-split pair has perceptual-hash distance")
    assert "<= 16 bits (imagehash.phash, 256 bits)" in out[1]["rule"]
    assert out[1]["text"] == (
        "0 cross-split pairs of near-identical images; 3 exact duplicates were removed during "
        "curation."
    )
    assert out[2]["text"].startswith("AUC 0.90 (95% CI 0.80-0.97) from file size, format")
    assert "(covid: covid; normal: kermany)" in out[3]["text"]


def test_verdicts_of_a_leaky_split_with_mixed_sources():
    pair = {"a": "x", "split_a": "train", "b": "y", "split_b": "test", "hamming": 3}
    sources = audit()["label_source"] + [
        {"label": "normal", "source": "nih", "split": "test", "images": 1, "patients": 1}
    ]
    out = verdicts(
        audit(
            patient_overlap={"patients_in_several_splits": 2},
            near_duplicates={**audit()["near_duplicates"], "pairs": [pair]},
            trivial_feature_probe={"auc": 0.55, "ci95": [0.4, 0.7]},
            border_probe={"auc": None},
            label_source=sources,
        ),
        flag=0.75,
        warn=0.6,
    )
    assert [(v["check"], v["verdict"]) for v in out] == [
        ("patient overlap between splits", "flag"),
        ("near-duplicate images across splits", "warn"),
        ("trivial-feature probe", "pass"),
        ("border-only probe", "not computed"),
        ("label vs source", "pass"),
    ]
    assert out[3]["text"].startswith("AUC n/a from image borders")
    assert (
        out[4]["text"]
        == "At least one label has several sources (covid: covid; normal: kermany, nih)."
    )


def phash(*ones: int) -> imagehash.ImageHash:
    """A 16-bit hash (4x4) with the given bits set."""
    bits = np.zeros(16, dtype=bool)
    bits[list(ones)] = True
    return imagehash.ImageHash(bits.reshape(4, 4))


def test_near_duplicates_pair_close_hashes_across_splits_only():
    ids = ["a", "b", "c", "d"]
    splits = ["train", "test", "train", "val"]
    hashes = [phash(), phash(0, 1), phash(0), phash(*range(16))]
    # a-b: 2 bits, different splits; a-c: 1 bit, same split (not a leak); b-c: 1 bit; d: far.
    assert near_duplicates(ids, splits, hashes, max_distance=2) == [
        {"a": "a", "split_a": "train", "b": "b", "split_b": "test", "hamming": 2},
        {"a": "b", "split_a": "test", "b": "c", "split_b": "train", "hamming": 1},
    ]
    assert [p["hamming"] for p in near_duplicates(ids, splits, hashes, max_distance=1)] == [1]
    assert near_duplicates(ids, splits, hashes, max_distance=0) == []
