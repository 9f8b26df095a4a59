"""Curation on the synthetic data set: every exclusion reason, and nothing lost."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import curation_rules, synthetic_sources
from cxr.curate import (
    Flow,
    Rules,
    check_classes,
    curate,
    drop_duplicates,
    patient_id_form,
    sample_rows,
)
from cxr.errors import DataError
from cxr.images import ImageRejected, load_image, resolve_inside


@pytest.fixture(scope="module")
def curated(synthetic_root):
    return curate(synthetic_sources(synthetic_root), curation_rules(), seed=2020)


def test_accounting_included_plus_excluded_is_total(curated):
    images, exclusions, flow = curated
    assert len(images) + len(exclusions) == flow["total"]
    for name, info in flow["sources"].items():
        n_in = (images["source"] == name).sum()
        n_out = (exclusions["source"] == name).sum()
        assert n_in == info["included"] and n_in + n_out == info["total"], name
        assert info["steps"][0]["remaining"] == info["total"]
        assert info["steps"][-1]["remaining"] == info["included"]


def test_the_collections_annotations_folder_is_left_to_curate_annotations(curated, synthetic_root):
    """The later snapshot's annotations/ (lung boxes, masks, severity) describe its images: they
    are neither images nor exclusions, and curation's accounting still holds (it would fail,
    naming them, if they were lost)."""
    images, exclusions, _ = curated
    folder = synthetic_root / "covid-chestxray-dataset-later" / "annotations"
    assert len(list(folder.rglob("*.png"))) > 10
    for table in (images, exclusions):
        assert not table["file"].str.startswith("annotations/").any()


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
    a, ex_a, _ = curate(sources, curation_rules(), seed=1)
    b, _, _ = curate(sources, curation_rules(), seed=1)
    c, _, _ = curate(sources, curation_rules(), seed=2)
    assert (a["source"] == "kermany").sum() == 20
    assert a["id"].tolist() == b["id"].tolist() != c["id"].tolist()
    assert (ex_a["reason"] == "not sampled").sum() > 0


def test_empty_class_error_names_the_rule(synthetic_root):
    images, exclusions, _ = curate(
        synthetic_sources(synthetic_root), curation_rules(views=("XYZ",)), 0
    )
    with pytest.raises(DataError, match="class 'covid' is empty.*removed by 'view'"):
        check_classes(images, exclusions, ["covid", "normal"])


def _rows(source: str, files_and_hashes: list[tuple[str, str]], label="normal") -> list[dict]:
    return [
        {"record": f, "source": source, "file": f, "patient": f"{source}:{f}", "label": label,
         "info": SimpleNamespace(pixel_sha256=h)}
        for f, h in files_and_hashes
    ]  # fmt: skip


def test_duplicates_keep_the_first_image_seen_across_sources():
    rows = _rows("covid", [("first.png", "h2")]) + _rows(
        "nih", [("x.png", "h1"), ("y.png", "h2"), ("z.png", "h1")]
    )
    unique, dropped = drop_duplicates(rows)
    assert [r["file"] for r in unique] == ["first.png", "x.png"]
    assert [(d["file"], d["step"], d["reason"], d["detail"]) for d in dropped] == [
        ("y.png", "duplicates", "duplicate image", "same pixels as covid/first.png"),
        ("z.png", "duplicates", "duplicate image", "same pixels as nih/x.png"),
    ]


def test_same_pixels_under_two_labels_is_a_label_conflict_and_excludes_all_copies():
    covid = _rows("covid", [("a.png", "h1"), ("b.png", "h2")], label="covid")
    normal = _rows("kermany", [("c.jpeg", "h1"), ("d.jpeg", "h1"), ("e.jpeg", "h3")])
    unique, dropped = drop_duplicates(covid + normal)
    assert [r["file"] for r in unique] == ["b.png", "e.jpeg"]
    assert [(d["file"], d["reason"], d["detail"]) for d in dropped] == [
        ("a.png", "label conflict", "same pixels as kermany/c.jpeg, labelled 'normal'"),
        ("c.jpeg", "label conflict", "same pixels as covid/a.png, labelled 'covid'"),
        ("d.jpeg", "label conflict", "same pixels as covid/a.png, labelled 'covid'"),
    ]


def _folder(root, files: dict[str, int]) -> None:
    """Images named as given, each of the pixels of its seed (equal seeds, equal pixels)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, seed in files.items():
        pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), np.uint8)
        Image.fromarray(pixels).save(root / name)


def _folder_source(root, label: str, **spec) -> dict:
    return {"kind": "folder", "root": str(root), "label": label, "role": "train",
            "patient_pattern": r"(p\d+)", **spec}  # fmt: skip


def test_label_conflicts_across_sources_are_logged_and_counted(tmp_path):
    _folder(tmp_path / "pos", {"p1.png": 1, "p2.png": 2})
    _folder(tmp_path / "neg", {"p7.png": 7, "p8.png": 1, "p9.png": 9})
    sources = {"pos": _folder_source(tmp_path / "pos", "covid"),
               "neg": _folder_source(tmp_path / "neg", "normal")}  # fmt: skip
    images, exclusions, flow = curate(sources, curation_rules(min_side=8), seed=0)
    assert sorted(images["id"]) == ["neg/p7.png", "neg/p9.png", "pos/p2.png"]
    conflicts = exclusions[exclusions["reason"] == "label conflict"]
    assert dict(zip(conflicts["file"], conflicts["detail"], strict=True)) == {
        "p1.png": "same pixels as neg/p8.png, labelled 'normal'",
        "p8.png": "same pixels as pos/p1.png, labelled 'covid'",
    }
    assert flow["excluded_by_reason"] == {"label conflict": 2}
    for name in sources:
        step = flow["sources"][name]["steps"][-1]
        assert step == {"step": "unique pixels", "remaining": 2 if name == "neg" else 1,
                        "removed": {"label conflict": 1}}  # fmt: skip


def test_a_duplicate_of_an_image_that_is_not_sampled_says_so(tmp_path):
    # Duplicates are decided among all decoded images, then the sample is drawn from the unique
    # ones (the article's 70 of 116 Kermany images). A copy of an image the sample leaves out
    # names it and its own exclusion, never an image as if it were in the data.
    files = {f"p{i}.png": i for i in range(1, 7)} | {"p1 (1).png": 1}
    _folder(tmp_path / "neg", files)
    _folder(tmp_path / "pos", {"p9.png": 9})
    sources = {"pos": _folder_source(tmp_path / "pos", "covid"),
               "neg": _folder_source(tmp_path / "neg", "normal", sample=2)}  # fmt: skip
    original_sampled = set()
    for seed in range(4):
        images, exclusions, _ = curate(sources, curation_rules(min_side=8), seed=seed)
        log = exclusions.set_index("file")
        assert log.loc["p1 (1).png", "reason"] == "duplicate image"
        original_sampled.add("neg/p1.png" in set(images["id"]))
        if "neg/p1.png" in set(images["id"]):
            assert log.loc["p1 (1).png", "detail"] == "same pixels as neg/p1.png"
        else:
            assert log.loc["p1.png", "reason"] == "not sampled"
            assert log.loc["p1 (1).png", "detail"] == (
                f"same pixels as neg/p1.png, itself excluded: not sampled (2 of 6, seed {seed})"
            )
    assert original_sampled == {True, False}  # the seeds cover both cases


def test_patient_ids_differing_only_in_format_are_warned_and_counted(tmp_path, caplog):
    # '1', '1.0' and '01' are three patients to the split, which may be one patient three times:
    # kept as written (no guessing), but logged and counted, since it can leak across splits.
    root = tmp_path / "covid"
    ids = ["1", "1.0", "01", " 2", "P3", "p3", "10", "1.5", "IM-0004", "IM-4"]
    _folder(root / "images", {f"{i}.png": i for i in range(len(ids))})
    rows = [f"{pid},COVID-19,PA,X-ray,{i}.png" for i, pid in enumerate(ids)]
    (root / "metadata.csv").write_text(
        "patientid,finding,view,modality,filename\n" + "\n".join(rows) + "\n"
    )
    sources = {"covid": {"kind": "ieee8023", "root": str(root), "label": "covid", "role": "train"}}
    with caplog.at_level("WARNING", logger="cxr.curate"):
        images, _, flow = curate(sources, curation_rules(min_side=8), seed=0)
    assert images["patient"].nunique() == len(ids)  # kept apart, as written
    assert flow["sources"]["covid"]["patient_ids_differing_only_in_format"] == 7
    assert flow["patient_ids_differing_only_in_format"] == 7
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3, warnings
    assert "'covid:01', 'covid:1', 'covid:1.0'" in warnings[0]
    assert "'covid:P3', 'covid:p3'" in warnings[1]
    assert "'covid:IM-0004', 'covid:IM-4'" in warnings[2]
    assert "different splits" in warnings[0]


def test_patient_id_form_takes_out_formatting_only():
    assert {patient_id_form(p) for p in ["c:1", "c:01", "c:1.0", "c:1.000", " c:1 "]} == {"c:1"}
    assert len({patient_id_form(p) for p in ["c:1", "c:10", "c:1.5", "c:1.05", "c:11"]}) == 5
    assert patient_id_form("c:IM-0019") == patient_id_form("C:im-19")


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
    assert rules == curation_rules()  # config.yaml restates the schema's defaults
    assert (rules.disease_finding, rules.views, rules.modality) == ("COVID-19", ("PA",), "X-ray")
    with pytest.raises(TypeError, match="missing"):  # no second set of defaults in the code
        Rules(views=("PA",))
    assert Rules.from_config(
        {**config["curation"], "views": ["PA", "AP"]}, config["labels"], 90
    ) == curation_rules(views=("PA", "AP"), chroma_threshold=90)


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
