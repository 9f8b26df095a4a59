"""Curation on the synthetic data set: every exclusion reason, and nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_sources
from cxr.curate import Rules, check_classes, curate
from cxr.errors import DataError
from cxr.images import ImageRejected, load_image, resolve_inside


@pytest.fixture(scope="module")
def curated(synthetic_root):
    return curate(synthetic_sources(synthetic_root), Rules(), seed=2020)


def test_accounting_included_plus_excluded_is_total(curated):
    images, exclusions, flow = curated
    assert len(images) + len(exclusions) == flow["total"]
    for name, info in flow["sources"].items():
        n_in = (images["source"] == name).sum()
        n_out = (exclusions["source"] == name).sum()
        assert n_in == info["included"] and n_in + n_out == info["total"], name
        assert info["steps"][0]["remaining"] == info["total"]
        assert info["steps"][-1]["remaining"] == info["included"]


def test_every_planted_fault_is_excluded_with_its_reason(curated):
    _, exclusions, _ = curated
    reasons = set(exclusions["reason"])
    assert "file missing" in reasons
    assert "undecodable" in reasons
    assert "duplicate image" in reasons
    assert any(r.startswith("view") for r in reasons)
    assert any(r.startswith("finding") for r in reasons)
    assert any(r.startswith("modality CT") for r in reasons)
    dupes = exclusions[exclusions["reason"] == "duplicate image"]
    assert dupes["detail"].str.startswith("same pixels as ").all()


def test_included_images_follow_the_article_rules(curated):
    images, _, _ = curated
    covid = images[images["source"] == "covid"]
    assert set(covid["view"]) == {"PA"} and set(covid["modality"]) == {"X-ray"}
    assert images["id"].is_unique and images["sha256"].is_unique
    assert set(images.loc[images["source"] == "nih", "role"]) == {"external"}
    assert (images["y"] == (images["label"] == "covid")).all()


def test_sampling_is_seeded_and_logged(synthetic_root):
    sources = synthetic_sources(synthetic_root)
    sources["kermany"]["sample"] = 20
    a, ex_a, _ = curate(sources, Rules(), seed=1)
    b, _, _ = curate(sources, Rules(), seed=1)
    c, _, _ = curate(sources, Rules(), seed=2)
    assert (a["source"] == "kermany").sum() == 20
    assert a["id"].tolist() == b["id"].tolist() != c["id"].tolist()
    assert (ex_a["reason"] == "not sampled").sum() > 0


def test_empty_class_error_names_the_rule(synthetic_root):
    images, exclusions, _ = curate(synthetic_sources(synthetic_root), Rules(views=("XYZ",)), 0)
    with pytest.raises(DataError, match="class 'covid' is empty.*removed by 'view'"):
        check_classes(images, exclusions, ["covid", "normal"])


def _save(path, array, mode=None, **kw):
    Image.fromarray(array, mode=mode).save(path, **kw)


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda p: _save(p, np.full((40, 40), 65535, np.uint16)), "I;16"),
        (lambda p: _save(p, np.zeros((40, 40, 4), np.uint8)), "RGBA"),
        (lambda p: Image.new("P", (40, 40)).save(p), "P"),
        (lambda p: Image.new("CMYK", (40, 40)).save(p.with_suffix(".jpg")), "CMYK"),
    ],
)
def test_image_modes_decode_to_8bit_gray(tmp_path, make, mode):
    path = tmp_path / "x.png"
    make(path)
    if not path.exists():
        path = path.with_suffix(".jpg")
    pixels, info = load_image(path, max_pixels=10_000)
    assert pixels.dtype == np.uint8 and pixels.shape == (40, 40)
    assert info.mode == mode


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("L", (60, 40))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "r.jpg", exif=exif)
    pixels, info = load_image(tmp_path / "r.jpg", max_pixels=10_000)
    assert pixels.shape == (60, 40) and (info.width, info.height) == (40, 60)


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"not an image", "not an image"), (None, "file missing")],
)
def test_broken_files_are_rejected_with_reason(tmp_path, content, reason):
    path = tmp_path / "x.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageRejected) as info:
        load_image(path, max_pixels=10_000)
    assert info.value.reason == reason


def test_truncated_jpeg_is_undecodable(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        tmp_path / "t.jpg"
    )
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRejected, match="undecodable"):
        load_image(tmp_path / "t.jpg", max_pixels=10_000)


def test_decompression_bomb_is_rejected_before_decoding(tmp_path):
    Image.new("L", (4000, 4000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageRejected, match="too many pixels"):
        load_image(tmp_path / "bomb.png", max_pixels=1_000_000)


@pytest.mark.parametrize("relative", ["../outside.png", "/etc/passwd", "a/../../x.png"])
def test_paths_cannot_leave_the_data_root(tmp_path, relative):
    with pytest.raises(ImageRejected, match="outside data root"):
        resolve_inside(tmp_path, relative)


def test_symlink_leaving_the_root_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(ImageRejected, match="outside data root"):
        resolve_inside(root, "link.png")


def test_rules_from_config_yaml_are_the_article_defaults(repo):
    import yaml

    config = yaml.safe_load((repo / "config.yaml").read_text())
    rules = Rules.from_config(
        config["curation"], config["labels"], config["marks"]["chroma_threshold"]
    )
    assert rules == Rules()
    assert Rules.from_config(
        {**config["curation"], "views": ["PA", "AP"]}, config["labels"], 90
    ) == Rules(views=("PA", "AP"), chroma_threshold=90)
