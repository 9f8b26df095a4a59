"""External validation: a later snapshot of the training collection (patients and pixels seen in
training excluded, with their reasons), external sources of any class, and the metrics of each
external set. On the synthetic later snapshot, where every planted case is known."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import curation_rules, synthetic_sources
from cxr import metrics
from cxr.config import check_external
from cxr.curate import curate
from cxr.errors import ConfigError
from cxr.evaluate import evaluate_predictions
from cxr.generalisation import generalisation
from cxr.synthetic import DISEASE_DIR, GROUND_TRUTH_FILE, LATER_DIR, generate_synthetic


@pytest.fixture(scope="module")
def later(synthetic_root):
    """The embedded default's curation, which has the later snapshot as `covid_later`; and the
    generator's record of what it planted there."""
    summary = generate_synthetic(
        synthetic_root.parent / "plan-only", seed=2020, n_later_patients=10
    )["later"]
    images, exclusions, flow = curate(
        synthetic_sources(synthetic_root), curation_rules(), seed=2020
    )
    return {"images": images, "exclusions": exclusions, "flow": flow, "planted": summary}


def test_later_snapshot_accounts_for_every_row(later):
    flow = later["flow"]["sources"]["covid_later"]
    assert flow["included"] + flow["excluded"] == flow["total"] == later["planted"]["rows"]
    assert len(later["images"]) + len(later["exclusions"]) == later["flow"]["total"]
    steps = [s["step"] for s in flow["steps"]]
    assert steps[-2:] == ["unique pixels", "new patients"]


def test_follow_ups_of_training_patients_are_excluded_as_seen(later):
    log = later["exclusions"].set_index("file")
    images = later["images"]
    trained = set(images.loc[images["role"] == "train", "patient"])
    for name in later["planted"]["follow_ups"]:
        row = log.loc[f"images/{name}"]
        assert row["reason"] == "patient seen in training data"
        assert row["patient"] in trained  # the key is covid's: same_patients_as
        assert row["detail"].startswith(f"patient {row['patient']} has ")
        assert row["detail"].endswith("image(s) in the training data (covid)")
    assert later["flow"]["sources"]["covid_later"]["steps"][-1]["removed"] == {
        "patient seen in training data": len(later["planted"]["follow_ups"])
    }


def test_reuploads_are_excluded_as_training_images(later):
    log = later["exclusions"].set_index("file")
    for name, original in later["planted"]["reuploads"].items():
        row = log.loc[f"images/{name}"]
        assert row["reason"] == "image already in training data"
        assert row["detail"] == f"same pixels as covid/images/{original}"
    # Every image of the first snapshot is there again, and is out for a reason: nothing of
    # the training data reaches the external set.
    first = later["images"][later["images"]["source"] == "covid"]
    again = log[log["source"] == "covid_later"]
    for file in first["file"]:
        assert again.loc[file, "reason"] == "image already in training data"


def test_external_set_holds_only_new_patients(later):
    images = later["images"]
    external = images[images["source"] == "covid_later"]
    new = {f"covid:{pid}" for pid in later["planted"]["new_patients"]}
    assert set(external["patient"]) == new
    assert not set(external["patient"]) & set(images.loc[images["role"] == "train", "patient"])
    assert (external["role"] == "external").all() and (external["label"] == "covid").all()
    # The later metadata's hierarchical findings go through the same rules as training's.
    log = later["exclusions"].set_index("file")
    for name in later["planted"]["excluded_by_rules"]:
        assert log.loc[f"images/{name}", "step"] == "rules"


def test_matched_patients_are_logged(synthetic_root, caplog):
    with caplog.at_level(logging.INFO, logger="cxr.curate"):
        curate(synthetic_sources(synthetic_root), curation_rules(), seed=2020)
    assert "source covid_later: 3 of 13 patients also have images in the training data" in (
        caplog.text
    )


def test_later_snapshot_leaves_the_first_unchanged(tmp_path):
    plain, grown = tmp_path / "plain", tmp_path / "grown"
    generate_synthetic(plain, seed=3, n_disease_patients=10, n_healthy_patients=6,
                       n_external_patients=1, image_size=48)  # fmt: skip
    generate_synthetic(grown, seed=3, n_disease_patients=10, n_healthy_patients=6,
                       n_external_patients=1, image_size=48, n_later_patients=2)  # fmt: skip
    files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file())
    truth = Path(GROUND_TRUTH_FILE)
    files.remove(truth)  # the table of what was planted gains the later snapshot's rows
    # Without a later snapshot the annotations go into the first one; with it, into the later.
    moved = [f for f in files if f.parts[:2] == (DISEASE_DIR, "annotations")]
    assert moved and not (grown / DISEASE_DIR / "annotations").exists()
    assert (grown / LATER_DIR / moved[0].relative_to(DISEASE_DIR)).exists()
    files = [f for f in files if f not in moved]
    assert files and all((plain / f).read_bytes() == (grown / f).read_bytes() for f in files)
    first, both = pd.read_csv(plain / truth), pd.read_csv(grown / truth)
    pd.testing.assert_frame_equal(both[both["source_dir"] != LATER_DIR], first)
    later = both[both["source_dir"] == LATER_DIR]
    assert set(later["kind"]) <= {"opacity", "arrow"} and len(later) > len(first) / 2
    assert not (plain / LATER_DIR).exists() and (grown / LATER_DIR / "metadata.csv").is_file()
    first = (grown / DISEASE_DIR / "images").iterdir()
    assert all(
        (grown / LATER_DIR / "images" / p.name).read_bytes() == p.read_bytes() for p in first
    )


# ----------------------------------------------------------------- pixels, whatever the order


def _image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), np.uint8)
    Image.fromarray(pixels).save(path)


def _folder(root, label: str, files: dict[str, int], **spec) -> dict:
    for name, seed in files.items():
        _image(root / name, seed)
    return {"kind": "folder", "root": str(root), "label": label, "role": "train",
            "patient_pattern": r"(p\d+)", **spec}  # fmt: skip


def test_an_external_copy_never_takes_a_training_image_out(tmp_path):
    # Listed first, and labelled otherwise: the external copy goes, the training image stays.
    sources = {
        "ext": _folder(tmp_path / "ext", "covid", {"p1.png": 1, "p5.png": 5, "p6.png": 5},
                       role="external"),
        "pos": _folder(tmp_path / "pos", "covid", {"p2.png": 2, "p3.png": 3}),
        "neg": _folder(tmp_path / "neg", "normal", {"p7.png": 1, "p8.png": 8}),
    }  # fmt: skip
    images, exclusions, flow = curate(sources, curation_rules(min_side=8), seed=0)
    assert sorted(images["id"]) == ["ext/p5.png", "neg/p7.png", "neg/p8.png", "pos/p2.png",
                                    "pos/p3.png"]  # fmt: skip
    log = exclusions.set_index("file")
    assert log.loc["p1.png", "reason"] == "image already in training data"
    assert log.loc["p1.png", "detail"] == "same pixels as neg/p7.png, labelled 'normal' there"
    # Copies within the external data are duplicates among themselves, as in training data.
    assert log.loc["p6.png", "reason"] == "duplicate image"
    assert list(images["source"].unique()) == ["ext", "pos", "neg"]  # config's order
    assert len(images) + len(exclusions) == flow["total"] == 7


def _with_later(tmp_path, later: dict[str, int], pattern: str) -> dict:
    """Training sources pos (patients p1, p2) and neg, and a later snapshot of pos with the
    files `later`, whose patient keys `pattern` reads."""
    return {
        "pos": _folder(tmp_path / "pos", "covid", {"p1-a.png": 1, "p2-a.png": 2}),
        "neg": _folder(tmp_path / "neg", "normal", {"p7.png": 7, "p8.png": 8}),
        "later": _folder(tmp_path / "later", "covid", later, role="external",
                         same_patients_as="pos", patient_pattern=pattern),
    }  # fmt: skip


def test_same_patients_as_puts_both_sources_in_one_key_space(tmp_path):
    sources = _with_later(tmp_path, {" p1-b.png": 11, "p3-a.png": 3}, r"^\s*(p\d+)")
    images, exclusions, _ = curate(sources, curation_rules(min_side=8), seed=0)
    assert list(images.loc[images["source"] == "later", "patient"]) == ["pos:p3"]
    row = exclusions.set_index("file").loc[" p1-b.png"]
    assert (row["reason"], row["patient"]) == ("patient seen in training data", "pos:p1")
    assert row["detail"] == "patient pos:p1 has 1 image(s) in the training data (pos)"


@pytest.mark.parametrize(
    "sources, sets, message",
    [
        ({"a": {"same_patients_as": "b"}}, {}, "sources.a.same_patients_as is 'b'"),
        ({"a": {"same_patients_as": "a"}, "b": {}}, {}, "must name another source"),
        (
            {"a": {"role": "train"}, "b": {"role": "external"}},
            {"t": ["a", "b"]},
            "names ['a'], which are not",
        ),
        ({"a": {"role": "external"}}, {"a": ["a"]}, "external_sets.a: a source has this name"),
    ],
)
def test_external_settings_are_checked(sources, sets, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        check_external(sources, sets)


# ------------------------------------------------------------------------------ metrics


def _predictions(n_test=20, later_pos=12, nih_neg=9, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, source, label, n in (("test", "covid", 1, n_test // 2), ("test", "kermany", 0,
                                    n_test // 2), ("external", "covid_later", 1, later_pos),
                                    ("external", "nih", 0, nih_neg)):  # fmt: skip
        for i in range(n):
            p = np.clip(0.5 + (0.3 if label else -0.3) + rng.normal(0, 0.25), 0, 1)
            rows.append({"split": split, "id": f"{source}/{i}", "patient": f"{source}:{i // 2}",
                         "source": source, "label": label, "probability": p})  # fmt: skip
    return pd.DataFrame(rows)


SETS = {"nih": ["nih"], "covid_later": ["covid_later"], "temporal": ["covid_later", "nih"],
        "gone": ["emptied"]}  # fmt: skip


def test_external_sets_get_the_metrics_their_classes_define():
    predictions = _predictions()
    ev = evaluate_predictions(predictions, threshold=0.5, n_boot=200, seed=0, external_sets=SETS)
    both = ev["external"]["temporal"]
    assert (both["kind"], both["classes"], both["n"]) == ("set", "both", 21)
    part = predictions[predictions["source"].isin(["covid_later", "nih"])]
    expected = metrics.binary_metrics(
        part["label"], part["probability"], part["patient"], threshold=0.5, n_boot=200, seed=0
    )
    for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "roc_auc"):
        assert both["metrics"][key]["value"] == expected[key]["value"]
        assert both["metrics"][key]["ci95"] == expected[key]["ci95"]
    assert both["metrics"]["accuracy"]["ci95_patient_bootstrap"] is not None
    assert both["roc"]["fpr"]
    positive = ev["external"]["covid_later"]
    assert (positive["kind"], positive["classes"]) == ("source", "positive")
    calls = int((predictions.query("source == 'covid_later'")["probability"] >= 0.5).sum())
    assert positive["positive_call_rate"]["k"] == calls
    assert positive["metrics"]["sensitivity"]["value"] == calls / 12
    for key in ("specificity", "ppv", "npv", "f1", "roc_auc"):
        assert positive["metrics"][key] == {"value": None, "ci95": None,
                                            "why": "no healthy images in this set"}  # fmt: skip
    assert "false_positive_rate" not in positive
    negative = ev["external"]["nih"]
    assert negative["classes"] == "negative"
    assert negative["false_positive_rate"]["k"] == negative["positive_call_rate"]["k"]
    assert negative["metrics"]["sensitivity"]["value"] is None
    gone = ev["external"]["gone"]
    assert (gone["n"], gone["classes"]) == (0, "none")
    assert gone["note"].startswith("no images: curation excluded every image")


def test_generalisation_gap_is_external_minus_internal():
    predictions = _predictions()
    ev = evaluate_predictions(predictions, threshold=0.5, n_boot=100, seed=0, external_sets=SETS)
    ev |= {"architecture": "MobileNet", "seed": 0, "protocol": "patient", "run": "seed0"}
    result = generalisation([{"evaluation": ev, "predictions": predictions}],
                            protocol="patient", threshold=0.5, n_boot=100, seed=0)  # fmt: skip
    rows = {r["set"]: r for r in result["architectures"]["MobileNet"]["rows"]}
    assert list(rows) == ["internal test", "nih", "covid_later", "temporal", "gone"]
    internal = rows["internal test"]["metrics"]
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        gap = rows["temporal"]["gap"][key]
        expected = rows["temporal"]["metrics"][key]["value"] - internal[key]["value"]
        assert gap["value"] == pytest.approx(expected)
        assert gap["ci95"][0] <= gap["value"] <= gap["ci95"][1]
    assert set(rows["covid_later"]["gap"]) == {"sensitivity"}
    assert set(rows["nih"]["gap"]) == {"specificity"}
    assert "gap" not in rows["gone"] and rows["gone"]["n"] == 0


def test_ids_that_match_a_training_patient_only_in_format_are_kept_and_warned(tmp_path, caplog):
    sources = _with_later(tmp_path, {"p01-b.png": 11, "P2-b.png": 12}, r"^([pP]\d+)")
    with caplog.at_level(logging.WARNING, logger="cxr.curate"):
        images, _, _ = curate(sources, curation_rules(min_side=8), seed=0)
    assert sorted(images.loc[images["source"] == "later", "patient"]) == ["pos:P2", "pos:p01"]
    assert "source later: 2 patient id(s) equal a training patient's id only once" in caplog.text
    assert "'pos:p01' (training: 'pos:p1')" in caplog.text
