"""The TensorFlow jobs as the rules call them, on tiny synthetic shards: one base per
architecture, heads on its stored features, and evaluation whose probabilities equal those of
the saved full model (base + head) on the images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import curation_rules, synthetic_sources
from cxr.curate import curate
from cxr.io import read_json, write_csv, write_json
from cxr.shards import write_shards
from cxr.split import split_protocol

pytestmark = pytest.mark.slow
SIZE = 32
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
TRAINING = {
    "image_size": SIZE, "batch_size": 8, "weights": "none", "onednn": True,
    "extra_architectures": {}, "epochs": 3, "learning_rate": 0.001, "dense_units": 8,
    "dropout": 0.5, "pool_size": 4, "augmentation": False,
    "fine_tune": {"layers": 0, "epochs": 1, "learning_rate": 1e-5}, "mixed_precision": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def stage(synthetic_root, tmp_path_factory):
    """Curated images, shards at 32 px, a patient split, and ResNet50's stored features."""
    from cxr.jobs import extract_features_job

    out = tmp_path_factory.mktemp("jobs")
    images = curate(synthetic_sources(synthetic_root), curation_rules(), seed=2020)[0]
    write_json(out / "manifest.json", write_shards(images, out, image_size=SIZE, count=2,
                                                   max_pixels=10**7))  # fmt: skip
    settings = {"protocol": "patient", "method": "patient", "fractions": FRACTIONS, "seed": 1}
    splits = split_protocol(images, settings, None)[0]
    write_csv(out / "splits.csv", splits)
    features = {
        "base": str(out / "features/base.keras"),
        "features": str(out / "features/features.npy"),
        "table": str(out / "features/features.csv"),
        "summary": str(out / "features/summary.json"),
    }
    summary = extract_features_job(
        inputs={"manifest": str(out / "manifest.json"), "weights": []},
        outputs=features,
        params={"architecture": "ResNet50", "training": TRAINING, "seed": 5, "check_images": 4},
        threads=2,
    )
    return {"out": out, "images": images, "splits": splits, "features": features,
            "summary": summary}  # fmt: skip


def _inputs(stage) -> dict:
    f = stage["features"]
    return {
        "features": f["features"], "table": f["table"], "base": f["base"],
        "feature_summary": f["summary"], "manifest": str(stage["out"] / "manifest.json"),
        "splits": [str(stage["out"] / "splits.csv")],
    }  # fmt: skip


RUN_FILES = (("model", "model.keras"), ("best", "best.keras"), ("history", "history.csv"),
             ("summary", "summary.json"))  # fmt: skip


def _train(stage, runs: list[dict], folder: str = "runs", checkpoint: str = "final") -> list[dict]:
    """train_models_job on `runs` of the patient protocol, in one call: each run's files."""
    from cxr.heads import train_models_job

    root = stage["out"] / folder
    files = [
        {k: str(root / run["name"] / f) for k, f in RUN_FILES}
        | {"predictions": str(root / f"{run['name']}.predictions.csv")}
        for run in runs
    ]
    train_models_job(
        inputs=_inputs(stage), threads=2,
        outputs={k: [f[k] for f in files] for k in files[0]},
        params={"architecture": "ResNet50", "protocols": ["patient"], "checkpoint": checkpoint,
                "runs": [{"protocol": "patient", "run": run, "training": TRAINING}
                         for run in runs]},
    )  # fmt: skip
    return files


def test_features_of_every_image_once(stage):
    table = pd.read_csv(stage["features"]["table"], keep_default_na=False)
    features = np.load(stage["features"]["features"])
    assert len(table) == len(features) == len(stage["images"])
    assert sorted(table["id"]) == sorted(stage["images"]["id"])
    summary = stage["summary"]
    trained = int((stage["images"]["role"] == "train").sum())
    assert summary["batchnorm_recalibrated_on"] == trained  # never the external images
    assert summary["forward_passes_per_image"] == 1
    assert summary["saved_base_check_images"] == 4


def test_evaluation_equals_the_saved_full_model(stage, tmp_path):
    """Head-on-features probabilities (what evaluation reports) equal the full model's."""
    import keras

    from cxr.architectures import DEFAULT_ARCHITECTURES
    from cxr.evaluate import evaluate_models_job
    from cxr.io import read_table
    from cxr.models import build_classifier, preprocess
    from cxr.shards import load_images

    run = {"name": "seed0", "seed": 0, "train_fraction": None}
    outputs = _train(stage, [run])[0]
    summary = read_json(outputs["summary"])
    assert summary["path"] == "stored-features" and summary["epochs_run"] == 3
    assert summary["prediction"].startswith("head on the stored features")
    splits = stage["splits"]
    frame = splits[splits["split"].isin(["test", "external"])].sort_values(["split", "id"])
    predictions = read_table(outputs["predictions"])
    assert list(predictions["id"]) == list(frame["id"])
    prob = predictions["probability"].to_numpy()
    # Independently: the whole model on every test and external image.
    classifier = build_classifier(
        keras.models.load_model(stage["features"]["base"], compile=False),
        keras.models.load_model(outputs["model"], compile=False),
    )
    images, _ = load_images(stage["out"] / "manifest.json", list(frame["id"]))
    x = preprocess(DEFAULT_ARCHITECTURES["ResNet50"], images, SIZE)
    full = np.asarray(classifier.predict(x, verbose=0))[:, 1]
    assert np.max(np.abs(full - prob)) < 1e-5
    assert prob.std() > 0  # not a constant model: the comparison means something
    evaluation = {k: [str(tmp_path / f"seed0.{k}")] for k in ("metrics", "roc", "confusion",
                                                                "curves")}  # fmt: skip
    params = {
        "architecture": "ResNet50", "labels": {"positive": "covid", "negative": "normal"},
        "runs": [{"protocol": "patient", "run": run, "training": TRAINING}],
        "evaluation": {"threshold": 0.5, "bootstrap": 100, "checkpoint": "final"},
        "figures_of": "patient",
    }  # fmt: skip
    inputs = {k: [outputs[k]] for k in ("predictions", "history", "summary")}
    result = evaluate_models_job(inputs=inputs, outputs=evaluation, params=params)[0]
    assert result["test"]["n"] == (frame["split"] == "test").sum()
    assert result["prediction"] == summary["prediction"]
    assert read_json(evaluation["metrics"][0]) == json.loads(json.dumps(result))
    for kind in ("roc", "confusion", "curves"):
        assert Path(evaluation[kind][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", kind
    # A run of a protocol the report does not show gets its metrics and no figures.
    metrics_only = {"metrics": [str(tmp_path / "other.json")], "roc": [], "confusion": [],
                    "curves": []}  # fmt: skip
    other = evaluate_models_job(
        inputs=inputs, outputs=metrics_only, params={**params, "figures_of": "article"}
    )[0]
    assert other == result and not list(tmp_path.glob("other.*.png"))
    with pytest.raises(ValueError, match="0 'roc' figures for 1 runs of patient"):
        evaluate_models_job(inputs=inputs, outputs=metrics_only, params=params)


def test_runs_fitted_together_equal_runs_fitted_alone(stage):
    """One process fitting several runs writes, for each, what a process of its own would:
    the same history, the same weights, the same predictions."""
    import keras

    runs = [
        {"name": "seed0", "seed": 0, "train_fraction": None},
        {"name": "f050-seed1", "seed": 1, "train_fraction": 0.5},
        {"name": "seed1", "seed": 1, "train_fraction": None},
    ]
    together = _train(stage, runs, "together", checkpoint="best")
    for run, batched in zip(runs, together, strict=True):
        alone = _train(stage, [run], f"alone-{run['name']}", checkpoint="best")[0]
        for name in ("history", "predictions"):
            assert Path(batched[name]).read_bytes() == Path(alone[name]).read_bytes(), name
        for name in ("model", "best"):
            a, b = (keras.models.load_model(f[name], compile=False) for f in (batched, alone))
            for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
                assert np.array_equal(x, y), (run["name"], name)
    # Different seeds and subsets do give different heads: the comparison can fail.
    first, second = (Path(f["history"]).read_bytes() for f in together[:2])
    assert first != second


def test_a_run_list_that_does_not_match_the_outputs_is_refused(stage, tmp_path):
    from cxr.errors import DataError
    from cxr.heads import train_models_job

    run = {"name": "seed0", "seed": 0, "train_fraction": None}
    outputs = {k: [str(tmp_path / k)] for k in ("model", "best", "history", "summary",
                                                "predictions")}  # fmt: skip
    params = {"architecture": "ResNet50", "protocols": ["patient"], "checkpoint": "final",
              "runs": [{"protocol": "patient", "run": run, "training": TRAINING}] * 2}  # fmt: skip
    with pytest.raises(DataError, match="for 2 runs"):
        train_models_job(inputs=_inputs(stage), outputs=outputs, params=params, threads=2)


def test_a_base_that_does_not_give_the_features_is_caught(stage):
    """extract_features reloads the saved base and checks it against the stored features."""
    from cxr.architectures import DEFAULT_ARCHITECTURES
    from cxr.errors import DataError
    from cxr.jobs import check_saved_base
    from cxr.shards import load_images

    arch = DEFAULT_ARCHITECTURES["ResNet50"]
    images, _ = load_images(stage["out"] / "manifest.json")
    stored = np.load(stage["features"]["features"])
    check = check_saved_base(stage["features"]["base"], arch, images[:3], stored, SIZE)
    assert check["images"] == 3 and check["relative_gap"] < 1e-5
    with pytest.raises(DataError, match="does not reproduce the stored features"):
        check_saved_base(stage["features"]["base"], arch, images[:3], stored * 1.01 + 1, SIZE)


def test_learning_curve_run_trains_on_its_subset(stage):
    from cxr.split import subsample_patients

    run = {"name": "f050-seed1", "seed": 1, "train_fraction": 0.5}
    summary = read_json(_train(stage, [run], "subset")[0]["summary"])
    subset = subsample_patients(stage["splits"], 0.5, 1)
    assert summary["n_train"] == len(subset)
    assert summary["n_train_patients"] == subset["patient"].nunique()
    assert summary["train_fraction"] == 0.5


@pytest.mark.parametrize("checkpoint", ["final", "best"])
def test_the_first_repeat_is_the_protocols_own_split_and_run(stage, checkpoint):
    """Repeat 0 of a protocol's repeated splits is its own split, and its head, fitted in
    memory, predicts what the protocol's first run (fitted with checkpoints on disk) does."""
    from cxr.heads import StoredFeatures, predict_repeats
    from cxr.io import read_table
    from cxr.split import repeated_splits

    settings = {"protocol": "patient", "method": "patient", "fractions": FRACTIONS, "seed": 1}
    table, _ = repeated_splits(stage["images"], settings, None, [1, 2])
    run = {"name": "seed0", "seed": 0, "train_fraction": None}
    features = StoredFeatures.load(stage["features"]["features"], stage["features"]["table"])
    plan = {"protocol": "patient", "run": run, "training": TRAINING}
    repeats = predict_repeats(plan, table, features, checkpoint)
    assert sorted(repeats["repeat"].unique()) == [0, 1]
    alone = _train(stage, [run], f"own-{checkpoint}", checkpoint=checkpoint)[0]
    own = read_table(alone["predictions"])
    own = own[own["split"] == "test"].reset_index(drop=True)
    first = repeats[repeats["repeat"] == 0].reset_index(drop=True)
    assert list(first["id"]) == list(own["id"])
    assert np.array_equal(first["probability"].to_numpy(), own["probability"].to_numpy())
    second = repeats[repeats["repeat"] == 1].reset_index(drop=True)
    assert set(second["id"]) != set(first["id"])  # another split, another test set
    # The head is reset between repeats: split seed 2 fitted second equals it fitted alone.
    alone_table, _ = repeated_splits(stage["images"], {**settings, "seed": 2}, None, [2])
    alone = predict_repeats(plan, alone_table, features, checkpoint)
    assert list(alone["id"]) == list(second["id"])
    assert np.array_equal(alone["probability"].to_numpy(), second["probability"].to_numpy())
