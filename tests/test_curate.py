"""Curation on the synthetic data set: every exclusion reason, and nothing lost."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_sources
from cxr.curate import Flow, Rules, check_classes, curate, drop_duplicates, sample_rows
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


def _rows(source: str, files_and_hashes: list[tuple[str, str]]) -> list[dict]:
    return [
        {"record": f, "source": source, "file": f, "patient": f"{source}:{f}", "label": "normal",
         "info": SimpleNamespace(pixel_sha256=h)}
        for f, h in files_and_hashes
    ]  # fmt: skip


def test_duplicates_keep_the_first_image_seen_across_sources():
    seen = {"h2": "covid/images/first.png"}  # a pixel hash of an earlier source
    unique, dropped = drop_duplicates(_rows("nih", [("x.png", "h1"), ("y.png", "h2"),
                                                    ("z.png", "h1")]), seen)  # fmt: skip
    assert [r["file"] for r in unique] == ["x.png"]
    assert [(d["file"], d["step"], d["detail"]) for d in dropped] == [
        ("y.png", "duplicates", "same pixels as covid/images/first.png"),
        ("z.png", "duplicates", "same pixels as nih/x.png"),
    ]
    assert seen == {"h2": "covid/images/first.png", "h1": "nih/x.png"}


def test_sampling_keeps_listing_order_and_logs_the_rest():
    rows = _rows("kermany", [(f"{i}.png", str(i)) for i in range(10)])
    keep, dropped = sample_rows(rows, 4, seed=3)
    assert len(keep) == 4 and len(dropped) == 6
    assert [r["file"] for r in keep] == sorted((r["file"] for r in keep), key=lambda f: int(f[:-4]))
    assert {d["detail"] for d in dropped} == {"4 of 10, seed 3"}
    assert keep == sample_rows(rows, 4, seed=3)[0]


def test_flow_counts_reasons_by_family():
    flow = Flow()
    dropped = [{"reason": "view 'AP', not PA"}, {"reason": "view 'L', not PA"},
               {"reason": "modality CT, not X-ray"}]  # fmt: skip
    assert flow.take("matches rules", ["kept"], dropped) == ["kept"]
    assert flow.steps == [
        {"step": "matches rules", "remaining": 1, "removed": {"modality": 1, "view": 2}}
    ]
    assert flow.excluded == dropped


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


@pytest.mark.parametrize(
    "relative, reason",
    [
        ("a\x00.png", "file name has a NUL byte"),
        ("x" * 256 + ".png", "file name too long"),
        ("d/" * 2100 + "x.png", "file name too long"),
    ],
)
def test_names_no_file_system_can_hold_are_refused_not_raised(tmp_path, relative, reason):
    with pytest.raises(ImageRejected) as info:
        resolve_inside(tmp_path, relative)
    assert info.value.reason == reason and len(info.value.detail) < 200


def test_an_os_error_reading_a_file_is_a_reason_not_a_crash(tmp_path, monkeypatch):
    """Permission denied (tests run as root, where chmod does not deny): 'unreadable'."""
    import errno
    from pathlib import Path

    path = tmp_path / "x.png"
    path.write_bytes(b"x")
    stat = Path.stat

    def denied(self, **kwargs):
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(ImageRejected) as info:
        load_image(path, max_pixels=10_000)
    assert info.value.reason == "unreadable" and "Permission denied" in info.value.detail
