"""Saliency statistics on hand-made maps, and Grad-CAM / occlusion on tiny models whose answer
is known. The controls on the trained tiny workflow are in tests/test_workflow.py."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from cxr import saliency
from cxr.errors import ConfigError


def test_regions_partition_the_image_and_match_the_border_probe():
    from cxr.audit import border_mask

    masks = saliency.region_masks(64, 0.125, 0.125)
    assert (masks["central"] == ~border_mask(64, 64, 0.125)).all()
    assert (masks["central"] ^ masks["border"]).all()  # every pixel in exactly one
    area = saliency.area_shares(masks)
    assert area["central"] == pytest.approx(48 * 48 / 64**2)
    assert area["top_left"] == area["top_right"] == pytest.approx(8 * 8 / 64**2)
    assert masks["top_left"][:8, :8].all() and masks["top_right"][:8, 56:].all()
    assert not (masks["top_left"] & masks["central"]).any()
    with pytest.raises(ConfigError, match="corner_fraction"):
        saliency.region_masks(64, 0.1, 0.2)


def test_mass_shares_on_hand_made_maps():
    masks = saliency.region_masks(8, 0.25, 0.25)  # 2-pixel strip, 2x2 corners
    maps = np.zeros((3, 8, 8))
    maps[0, 0, 0] = 3.0  # all in the top-left corner
    maps[0, 4, 4] = -5.0  # negative evidence is not mass
    maps[1, 4, 4] = 1.0  # half central,
    maps[1, 0, 7] = 1.0  # half top-right
    # maps[2]: nothing pointed anywhere
    shares = saliency.mass_shares(maps, masks)
    assert shares["top_left"][0] == 1.0 and shares["border"][0] == 1.0
    assert shares["central"][0] == 0.0
    assert shares["central"][1] == 0.5 and shares["top_right"][1] == 0.5
    assert all(np.isnan(shares[r][2]) for r in saliency.REGIONS)
    flat = saliency.mass_shares(np.ones((1, 8, 8)), masks)
    area = saliency.area_shares(masks)
    assert {r: flat[r][0] for r in area} == pytest.approx(area)


def test_peak_regions_and_pointing_game():
    masks = saliency.region_masks(64, 0.125, 0.125)
    peaks = np.array([[0.05, 0.05], [0.95, 0.02], [0.5, 0.5], [0.5, 0.95], [np.nan, np.nan]])
    assert saliency.peak_regions(peaks, masks) == [
        "top_left", "top_right", "central", "border", None,
    ]  # fmt: skip
    boxes = [[[0.4, 0.4, 0.6, 0.6]], [[0.0, 0.0, 0.1, 0.1]], [], [[0.4, 0.4, 0.6, 0.6]]]
    hits = saliency.pointing_game(np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [np.nan] * 2]),
                                  boxes)  # fmt: skip
    # The image without a box is left out; the one without a peak counts as a miss.
    assert (hits["k"], hits["n"], hits["without_peak"]) == (1, 3, 1)
    assert hits["ci95"][0] < 1 / 3 < hits["ci95"][1]
    assert hits["random_point_rate"] == pytest.approx((0.04 + 0.01 + 0.04) / 3, abs=0.005)


def test_outcomes_and_group_summaries():
    predictions = pd.DataFrame(
        {
            "split": ["test"] * 4 + ["external"] * 2,
            "id": list("abcdef"),
            "patient": ["p1", "p1", "p2", "p3", "p4", "p5"],
            "source": ["covid", "covid", "kermany", "kermany", "nih", "nih"],
            "label": [1, 1, 0, 0, 0, 0],
            "probability": [0.9, 0.2, 0.7, 0.1, 0.8, 0.3],
        }
    )
    frame = predictions.assign(outcome=saliency.outcomes(predictions, 0.5))
    assert list(frame["outcome"]) == ["TP", "FN", "FP", "TN", "external FP", "external TN"]
    shares = {r: np.array([0.1, 0.2, 0.3, 0.4, 0.5, np.nan]) for r in saliency.REGIONS}
    groups = saliency.group_summaries(
        frame, shares, labels={"positive": "covid", "negative": "normal"}, n_boot=50, seed=0
    )
    by = {(g["by"], g["value"]): g for g in groups}
    assert by[("all test images", "")]["images"] == 4
    assert by[("all test images", "")]["shares"]["central"]["mean"] == pytest.approx(0.25)
    assert by[("class", "covid")]["patients"] == 1
    assert by[("source", "nih")]["shares"]["border"]["n"] == 1  # the NaN share is left out
    assert by[("outcome", "external TN")]["shares"]["border"]["mean"] is None
    ci = by[("all test images", "")]["shares"]["central"]["ci95"]
    assert 0.1 <= ci[0] <= 0.25 <= ci[1] <= 0.4
    area = {"border": 0.2}
    flagged = {"shares": {"border": {"mean": 0.5, "ci95": [0.3, 0.7]}}}
    assert saliency.outside_verdict(flagged, area)["verdict"] == "flag"
    wide = {"shares": {"border": {"mean": 0.5, "ci95": [0.1, 0.7]}}}
    assert saliency.outside_verdict(wide, area)["verdict"] == "warn"
    inside = {"shares": {"border": {"mean": 0.1, "ci95": [0.05, 0.15]}}}
    assert saliency.outside_verdict(inside, area)["verdict"] == "pass"


def _evaluated() -> pd.DataFrame:
    """A predictions table: 3 test images, and external nih (5 healthy) and later (3 disease,
    1 healthy), interleaved as evaluation may write them."""
    rows = [
        ("external", "nih/a", "nih", 0), ("test", "covid/a", "covid", 1),
        ("external", "later/a", "later", 1), ("external", "nih/b", "nih", 0),
        ("test", "kermany/a", "kermany", 0), ("external", "nih/c", "nih", 0),
        ("external", "later/b", "later", 1), ("external", "later/c", "later", 0),
        ("external", "nih/d", "nih", 0), ("test", "kermany/b", "kermany", 0),
        ("external", "later/d", "later", 1), ("external", "nih/e", "nih", 0),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["split", "id", "source", "label"])
    frame["patient"] = frame["id"].str.replace("/", ":")
    frame["probability"] = np.linspace(0.05, 0.95, len(frame))
    return frame[["split", "id", "patient", "source", "label", "probability"]]


def test_select_images_bounds_each_external_source_and_class():
    evaluated = _evaluated()
    kept = saliency.select_images(evaluated, 2, seed=7)
    # Every test image stays; nih (healthy) and later (disease) are cut to 2 each, later's one
    # healthy image stays; the rows keep the predictions' order.
    assert kept["id"][kept["split"] == "test"].tolist() == ["covid/a", "kermany/a", "kermany/b"]
    counts = kept[kept["split"] == "external"].groupby(["source", "label"]).size().to_dict()
    assert counts == {("later", 0): 1, ("later", 1): 2, ("nih", 0): 2}
    position = {i: k for k, i in enumerate(evaluated["id"])}
    assert [position[i] for i in kept["id"]] == sorted(position[i] for i in kept["id"])
    assert list(kept.columns) == list(evaluated.columns)
    # The sample: the smallest SHA-256 of "<seed>:<id>" in each group, whatever the row order.
    nih = sorted(evaluated["id"][evaluated["source"] == "nih"],
                 key=lambda i: saliency.sample_key(7, i))[:2]  # fmt: skip
    assert set(kept["id"][kept["source"] == "nih"]) == set(nih)
    shuffled = saliency.select_images(evaluated.sample(frac=1, random_state=1), 2, seed=7)
    assert set(shuffled["id"]) == set(kept["id"])
    assert saliency.select_images(evaluated, 2, seed=7).equals(kept)  # deterministic
    # None keeps all, 0 only the test images, a large bound all.
    assert saliency.select_images(evaluated, None, seed=7).equals(evaluated)
    assert saliency.select_images(evaluated, 5, seed=7).equals(evaluated)
    assert (saliency.select_images(evaluated, 0, seed=7)["split"] == "test").all()
    with pytest.raises(ConfigError, match="external_per_source"):
        saliency.select_images(evaluated, -1, seed=7)


def test_images_with_a_lung_region_are_always_mapped():
    evaluated = _evaluated()
    sampled = set(saliency.select_images(evaluated, 0, seed=7)["id"])
    assert "later/a" not in sampled  # the bound of 0 leaves every external image out
    kept = saliency.select_images(evaluated, 0, seed=7, always={"later/a": None})
    assert set(kept["id"]) == sampled | {"later/a"}
    labels = {"positive": "covid", "negative": "normal"}
    chosen = saliency.selection(evaluated, kept, per_source=0, seed=7, labels=labels,
                                always={"later/a"})  # fmt: skip
    assert chosen["mapped"] == 4 and chosen["rule"].endswith(
        "and every external image with a lung region in the annotations"
    )
    # Without annotated external images the rule reads as it always did.
    plain = saliency.selection(evaluated, kept, per_source=0, seed=7, labels=labels)
    assert "lung region" not in plain["rule"]


def test_selection_counts_add_up():
    evaluated = _evaluated()
    kept = saliency.select_images(evaluated, 2, seed=7)
    chosen = saliency.selection(evaluated, kept, per_source=2, seed=7,
                                labels={"positive": "covid", "negative": "normal"})  # fmt: skip
    assert (chosen["images"], chosen["mapped"], chosen["left_out"]) == (12, 8, 4)
    by = {(g["split"], g["source"], g["label"]): g for g in chosen["groups"]}
    nih = by[("external", "nih", "normal")]
    assert (nih["images"], nih["mapped"], nih["left_out"]) == (5, 2, 3)
    assert by[("external", "later", "covid")]["left_out"] == 1
    assert by[("test", "kermany", "normal")] == {
        "split": "test", "source": "kermany", "label": "normal",
        "images": 2, "mapped": 2, "left_out": 0,
    }  # fmt: skip
    assert all(g["mapped"] + g["left_out"] == g["images"] for g in chosen["groups"])
    assert sum(g["images"] for g in chosen["groups"]) == len(evaluated)
    assert chosen["external_per_source"] == 2 and "'7:<image id>'" in chosen["rule"]
    every = saliency.selection(evaluated, evaluated, per_source=None, seed=7,
                               labels={"positive": "covid", "negative": "normal"})  # fmt: skip
    assert every["left_out"] == 0 and "null" in every["rule"]
    json.dumps(chosen, allow_nan=False)  # plain values for the statistics JSON


def test_ground_truth_boxes_match_curated_images_by_path(tmp_path):
    truth = pd.DataFrame(
        {
            "source_dir": ["covid-x", "covid-x", "normal-y"],
            "file": ["images/a.png", "images/a.png", "b.jpeg"],
            "kind": ["opacity", "arrow", "marker"],
            "x0": [0.1, 0.2, 0.0],
            "y0": [0.1, 0.2, 0.0],
            "x1": [0.3, 0.4, 0.1],
            "y1": [0.3, 0.4, 0.1],
        }  # fmt: skip
    )
    images = pd.DataFrame(
        {
            "id": ["covid/images/a.png", "normal/b.jpeg", "nih/c.png"],
            "path": ["res/syn/covid-x/images/a.png", "res/syn/normal-y/b.jpeg", "other/c.png"],
        }
    )
    boxes = saliency.ground_truth_boxes(truth, images, "res/syn")
    assert boxes == {
        "covid/images/a.png": {"opacity": [[0.1, 0.1, 0.3, 0.3]], "arrow": [[0.2, 0.2, 0.4, 0.4]]},
        "normal/b.jpeg": {"marker": [[0.0, 0.0, 0.1, 0.1]]},
    }


def test_arrays_are_written_byte_identically(tmp_path):
    arrays = {"ids": np.array(["a", "b"]), "maps": np.arange(8, dtype=np.float16).reshape(2, 2, 2)}
    saliency.write_arrays(tmp_path / "one.npz", arrays)
    saliency.write_arrays(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as loaded:
        assert loaded["ids"].tolist() == ["a", "b"]
        assert (loaded["maps"] == arrays["maps"]).all()
    assert zipfile.ZipFile(tmp_path / "one.npz").testzip() is None


# --------------------------------------------------------------------------- TensorFlow


def _head(feature_shape, crop=None, weights=None):
    """Features -> (optional crop of the top-left 2x2 cells) -> mean -> softmax of two logits,
    the healthy logit 0, the disease logit `weights` . mean (the workflow's heads end so)."""
    import keras

    features = keras.Input(feature_shape)
    x = keras.layers.Cropping2D(((0, 6), (0, 6)))(features) if crop else features
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, name="head_output", activation="softmax")(x)
    head = keras.Model(features, out, name="toy_head")
    head.get_layer("head_output").set_weights([np.asarray(weights, np.float32),
                                               np.zeros(2, np.float32)])  # fmt: skip
    return head


@pytest.fixture(scope="module")
def two_feature_model():
    """A base whose two channels are the image's red and green (8x8 cells), and a head that
    reads only the red one: an image with a red spot top-left and a green one bottom-right has
    its disease evidence in the top-left corner only."""
    import keras

    image = keras.Input((8, 8, 3))
    block = keras.layers.Conv2D(2, 1, use_bias=False, name="block")(image)
    base = keras.Model(image, block, name="toy_base")
    base.get_layer("block").set_weights([np.eye(3, 2, dtype=np.float32).reshape(1, 1, 3, 2)])
    return base, _head((8, 8, 2), weights=[[0.0, 0.01], [0.0, 0.0]])


@pytest.fixture(scope="module")
def corner_model():
    """A base that sums the channels and a head that reads only the top-left 2x2 cells."""
    import keras

    image = keras.Input((8, 8, 3))
    block = keras.layers.Conv2D(1, 1, kernel_initializer="ones", use_bias=False)(image)
    base = keras.Model(image, block, name="toy_base")
    return base, _head((8, 8, 1), crop=True, weights=[[0.0, 0.01]])


def test_gradcam_peaks_where_the_evidence_is(two_feature_model):
    from cxr import attribution

    base, head = two_feature_model
    x = np.zeros((2, 8, 8, 3), np.float32)
    x[:, :2, :2, 0] = 100.0  # red top-left: what the head reads
    x[:, 6:, 6:, 1] = 100.0  # green bottom-right: what it ignores
    maps = attribution.gradcam(base, head, x, np.array([1, 1]), size=16)
    assert maps.maps.shape == (2, 16, 16) and maps.cells_shape == (8, 8)
    assert (maps.peaks == 1 / 16).all()  # the centre of the first top-left cell
    shares = saliency.mass_shares(maps.maps, saliency.region_masks(16, 0.25, 0.25))
    assert (shares["top_left"] > 0.85).all()  # the rest: bilinear upsampling's bleed
    assert (maps.maps[:, 8:, 8:] == 0).all()  # nothing where the ignored green spot is
    # Explaining a healthy call asks what lowered the disease score: nothing here does.
    healthy = attribution.gradcam(base, head, x, np.array([0, 0]), size=16)
    assert (healthy.maps == 0).all() and np.isnan(healthy.peaks).all()
    # The layer choice: the last layer with at least min_cells cells per side.
    assert attribution.gradcam_layer(base, 7).name == "block"
    with pytest.raises(Exception, match="gradcam_min_cells"):
        attribution.gradcam_layer(base, 9)
    # Asking for that layer explicitly gives the same maps as the base's output.
    again = attribution.gradcam(base, head, x, np.array([1, 1]), size=16,
                                layer=base.get_layer("block"))  # fmt: skip
    assert np.allclose(again.maps, maps.maps)


def test_gradcam_layer_passes_over_padding():
    """MobileNet pads before each strided convolution: at 64 px the last map of 8 cells or more
    is a 9x9 padding of the 8x8 block, whose cells are not the image's."""
    import keras

    from cxr import attribution

    image = keras.Input((16, 16, 3))
    block = keras.layers.Conv2D(2, 3, padding="same", name="block")(image)
    padded = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(block)
    out = keras.layers.Conv2D(2, 3, strides=3, name="strided")(padded)  # 5x5
    base = keras.Model(image, out)
    assert attribution.gradcam_layer(base, 7).name == "block"


def test_occlusion_peaks_where_graying_lowers_the_probability(corner_model):
    from cxr import attribution

    base, head = corner_model
    images = np.full((1, 8, 8, 1), 250, np.uint8)

    def predict(batch):
        x = np.repeat(batch.astype(np.float32), 3, axis=-1)
        return np.asarray(head(base(x)))[:, 1]

    maps = attribution.occlusion(predict, images, np.array([1]), patch=2, stride=2)
    assert maps.cells_shape == (4, 4)
    assert tuple(maps.peaks[0]) == (0.125, 0.125)  # the first patch's centre
    assert maps.maps[0, :2, :2].min() > 0 and maps.maps[0, 4:, 4:].max() == 0


def _occlusion_per_position(predict, images, predicted, *, patch, stride):
    """The reference: occlusion as explain_job computed it before its calls were batched,
    one classifier call per patch position over all images."""
    from cxr import attribution

    n, height, width = images.shape[:3]
    ys = list(range(0, height - patch + 1, stride))
    xs = list(range(0, width - patch + 1, stride))
    sign = np.where(predicted == 1, 1.0, -1.0)
    original = np.asarray(predict(images), dtype=np.float64)
    maps = np.zeros((n, height, width), np.float64)
    cover = np.zeros((height, width), np.float64)
    cells = np.zeros((n, len(ys), len(xs)), np.float64)
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            occluded = images.copy()
            occluded[:, y : y + patch, x : x + patch] = attribution.OCCLUSION_GRAY
            drop = sign * (original - np.asarray(predict(occluded), dtype=np.float64))
            cells[:, i, j] = drop
            maps[:, y : y + patch, x : x + patch] += drop[:, None, None]
            cover[y : y + patch, x : x + patch] += 1
    maps = np.maximum(maps / np.maximum(cover, 1), 0.0)
    return maps.astype(np.float32), attribution._cell_peaks(cells), cells.shape[1:]


def test_batched_occlusion_equals_one_call_per_position():
    """Batches that mix positions and images (here 7 per call: they split positions across
    calls) give the per-position loop's maps, peaks and cells, on a model that reads every
    pixel (a convolution over the whole image, weighted by position)."""
    import keras

    from cxr import attribution

    rng = np.random.default_rng(3)
    image = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="tanh", name="conv")(image)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(image, out)
    model.set_weights([rng.normal(0, 0.05, w.shape).astype(np.float32)
                       for w in model.get_weights()])  # fmt: skip
    calls = []

    def predict(batch):
        calls.append(len(batch))
        x = np.repeat(batch.astype(np.float32) / 255.0, 3, axis=-1)
        return np.asarray(model(x, training=False))[:, 1]

    images = rng.integers(0, 256, (5, 12, 12, 1), dtype=np.uint8)
    predicted = np.array([1, 0, 1, 1, 0])
    want_maps, want_peaks, want_cells = _occlusion_per_position(
        predict, images, predicted, patch=4, stride=3
    )
    calls.clear()
    found = attribution.occlusion(predict, images, predicted, patch=4, stride=3, batch_size=7)
    assert found.cells_shape == want_cells == (3, 3)
    # 9 positions x 5 images in calls of at most 7, then the unoccluded images.
    assert calls == [7] * 6 + [3, 5]
    assert np.allclose(found.maps, want_maps, rtol=0, atol=1e-6)
    assert found.maps.max() > 1e-3  # the test compares maps that have something in them
    np.testing.assert_array_equal(found.peaks, want_peaks)
    # One call for everything, and one image per call: the same maps.
    for batch_size in (45, 1):
        again = attribution.occlusion(predict, images, predicted, patch=4, stride=3,
                                      batch_size=batch_size)  # fmt: skip
        assert np.allclose(again.maps, want_maps, rtol=0, atol=1e-6)
    # Memory bound: as many pixels as 64 images at 224 px, at most 256 images.
    assert attribution.images_per_call(64) == 256
    assert attribution.images_per_call(224) == 64
    assert attribution.images_per_call(448) == 16


def test_split_classifier_finds_base_and_head(corner_model):
    import keras

    from cxr import attribution
    from cxr.models import build_classifier

    base, head = corner_model
    assert attribution.split_classifier(head, base) == (base, head)
    full = build_classifier(base, head)
    found_base, found_head = attribution.split_classifier(full, base)
    assert (found_base.name, found_head.name) == ("toy_base", "toy_head")
    with pytest.raises(Exception, match="expected a head"):
        attribution.split_classifier(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
                                     base)  # fmt: skip


def test_statistics_json_is_plain(tmp_path):
    """What explain_job writes must survive json (no NaN: None instead)."""
    from cxr.io import finite_or_none as _finite

    assert _finite(np.nan) is None and _finite(np.float32(0.5)) == 0.5
    json.dumps({"x": _finite(np.nan)}, allow_nan=False)
