"""Hostile inputs: every broken row or file is logged with its reason (never a crash, never a
silent drop), and bad settings stop the run before any job, naming the key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO
from cxr.config import load
from cxr.curate import Rules, curate
from cxr.errors import ConfigError

SCHEMA = REPO / "rules" / "config.schema.yaml"
HEADER = "patientid,offset,finding,view,modality,filename,clinical notes\n"


def gray(path, size=(64, 64), seed=0, **save):
    pixels = np.random.default_rng(seed).integers(0, 255, size[::-1], dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)


@pytest.fixture
def hostile(tmp_path):
    """An ieee8023 source and a folder source holding every fault the issue lists."""
    covid = tmp_path / "covid"
    (covid / "images").mkdir(parents=True)
    folder = tmp_path / "normal"
    folder.mkdir()
    outside = tmp_path / "outside.png"
    gray(outside, seed=99)
    rows = []

    def row(pid, file, view="PA", finding="COVID-19", modality="X-ray", notes=""):
        rows.append(f'{pid},0,{finding},{view},{modality},"{file}","{notes}"')

    gray(covid / "images/ok.png", seed=1)
    row(1, "ok.png", notes="multi\nline, with <b>html</b>")
    row(1, "ok.png")  # duplicated row
    row(2, "missing.png")
    (covid / "images/zero.jpg").write_bytes(b"")
    row(3, "zero.jpg")
    gray(covid / "images/trunc.jpg", seed=2)
    data = (covid / "images/trunc.jpg").read_bytes()
    (covid / "images/trunc.jpg").write_bytes(data[: len(data) // 2])
    row(4, "trunc.jpg")
    (covid / "images/text.jpg").write_text("not an image")
    row(5, "text.jpg")
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(covid / "images/deep.png")
    row(6, "deep.png")
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (64, 64, 4), np.uint8)).save(
        covid / "images/rgba.png"
    )
    row(7, "rgba.png")
    Image.fromarray(np.random.default_rng(8).integers(0, 255, (64, 64), np.uint8)).convert(
        "P"
    ).save(covid / "images/palette.png")
    row(8, "palette.png")
    Image.new("CMYK", (64, 64), (10, 20, 30, 40)).save(covid / "images/cmyk.jpg")
    row(9, "cmyk.jpg")
    rotated = Image.fromarray(np.random.default_rng(10).integers(0, 255, (40, 64), np.uint8))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(covid / "images/exif.jpg", exif=exif)
    row(10, "exif.jpg")
    Image.new("L", (5000, 5000)).save(covid / "images/bomb.png")
    row(11, "bomb.png")
    shutil.copy(covid / "images/ok.png", covid / "images/copy of ok (1).png")
    row(12, "copy of ok (1).png")
    gray(covid / "images/ünïcödé röntgen.png", seed=13)
    row(13, "ünïcödé röntgen.png")
    row(14, "../../outside.png")
    row(15, str(outside))
    (covid / "images/link.png").symlink_to(outside)
    row(16, "link.png")
    gray(covid / "images/view.png", seed=17)
    row(17, "view.png", view="Oblique-XYZ")
    gray(covid / "images/finding.png", seed=18)
    row(18, "finding.png", finding="Unknown/Thing")
    gray(covid / "images/orphan.png", seed=19)  # no metadata row
    (covid / "images/notes.txt").write_text("a stray file")
    (covid / "metadata.csv").write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")

    gray(folder / "IM-0001-0001.jpeg", seed=30)
    gray(folder / "IM-0002-0001 (1).jpeg", seed=31)
    gray(folder / "NORMAL2-IM-0003-0001 é.jpeg", seed=32)
    (folder / "IM-0004-0001.jpeg").write_bytes(b"\xff\xd8\xff")
    (folder / "README.txt").write_text("hello")
    gray(folder / "no-key.jpeg", seed=33)
    sources = {
        "covid": {"kind": "ieee8023", "root": str(covid), "label": "covid"},
        "normal": {
            "kind": "folder",
            "root": str(folder),
            "label": "normal",
            "patient_pattern": r"(?:NORMAL2-)?(IM-\d{4})",
        },  # fmt: skip
    }
    return sources


def test_every_input_is_accounted_for_with_a_reason(hostile):
    images, exclusions, flow = curate(hostile, Rules(max_pixels=10_000_000), seed=0)
    # 19 metadata rows + 2 files without a row, and 6 files in the folder source.
    assert len(images) + len(exclusions) == flow["total"] == 19 + 2 + 6
    reasons = dict(zip(exclusions["file"], exclusions["reason"], strict=True))
    assert reasons["images/missing.png"] == "file missing"
    assert reasons["images/zero.jpg"] == "empty file"
    assert reasons["images/trunc.jpg"] == "undecodable"
    assert reasons["images/text.jpg"] == "not an image"
    assert reasons["images/bomb.png"] == "too many pixels"
    assert reasons["images/copy of ok (1).png"] == "duplicate image"
    assert reasons["images/../../outside.png"] == "path outside data root"
    assert reasons["images/link.png"] == "path outside data root"
    assert reasons["images/view.png"].startswith("view 'Oblique-XYZ'")
    assert reasons["images/finding.png"].startswith("finding 'Unknown/Thing'")
    assert reasons["images/orphan.png"] == "no metadata row"
    assert reasons["images/notes.txt"] == "not an image file name (.txt)"
    assert reasons["README.txt"].startswith("not an image file name")
    assert reasons["no-key.jpeg"].startswith("no patient key")
    assert reasons["IM-0004-0001.jpeg"] == "not an image"  # a bare JPEG signature
    absolute = exclusions[
        exclusions["file"].str.contains("outside.png") & ~exclusions["file"].str.contains(r"\.\.")
    ]
    assert set(absolute["reason"]) == {"path outside data root"}
    # The duplicated metadata row points at the same file: logged as a duplicate, not lost.
    assert (exclusions["file"] == "images/ok.png").sum() == 1
    kept = set(images["file"])
    decodable = {"images/ok.png", "images/deep.png", "images/rgba.png", "images/palette.png",
                 "images/cmyk.jpg", "images/exif.jpg", "images/ünïcödé röntgen.png"}  # fmt: skip
    odd_names = {"IM-0001-0001.jpeg", "IM-0002-0001 (1).jpeg", "NORMAL2-IM-0003-0001 é.jpeg"}
    assert decodable | odd_names <= kept
    exif = images.set_index("file").loc["images/exif.jpg"]
    assert (exif["width"], exif["height"]) == (40, 64)  # EXIF orientation applied
    assert "multi\nline" in images.set_index("file").loc["images/ok.png", "notes"]


@pytest.mark.parametrize("pattern", [r"(IM-\d{4})?", r"(\d*)", r"(?:(IM-\d{4})|\.png)", r"( *)I"])
def test_a_file_whose_patient_key_comes_out_empty_is_excluded(tmp_path, pattern):
    # The config check refuses such patterns; curation still never keys a file None or ''.
    for name, seed in [("IM-0001-0001.png", 1), ("x.png", 2), ("IM-0002-0001.png", 3)]:
        gray(tmp_path / name, seed=seed)
    sources = {"normal": {"kind": "folder", "root": str(tmp_path), "label": "normal",
                          "patient_pattern": pattern}}  # fmt: skip
    images, exclusions, _ = curate(sources, Rules(), seed=0)
    keys = set(images["patient"])
    assert not keys & {"normal:", "normal:None", "normal: "}, keys
    assert len(images) + len(exclusions) == 3
    no_key = exclusions[exclusions["reason"].str.startswith("no patient key in file name")]
    assert len(no_key) == 3 - len(images) >= 1


def bad_config(overrides: dict) -> dict:
    """config.yaml with dotted keys set to the given values."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"training.architectures": ["MobileNet", "NoSuchNet"]}, "NoSuchNet"),
        ({"training.epochs": 0}, "training.epochs"),
        ({"training.epochs": -3}, "training.epochs"),
        ({"splits.train": 0.5}, "sum to 1"),
        ({"training.image_size": 16}, "training.image_size"),
        ({"training.learnig_rate": 0.1}, "learnig_rate"),
        ({"dataset": "nope"}, "nope"),
        ({"splits.train": 0.5, "splits.test": 0.4}, "splits.test"),
        ({"audit.auc_warn": 0.9}, "auc_warn"),
        ({"protocols.run": ["patient", "nope"]}, "protocols.nope is not defined"),
        ({"protocols.learning_curve.train_fractions": [0.333]}, "whole percentage"),
        ({"protocols.article.split": "random"}, "random"),
        ({"marks.min_area": 2}, "marks.min_area"),
        (
            {
                "training.weights": "imagenet",
                "training.architectures": ["DenseNet121", "Xception"],
                "training.extra_architectures": {
                    "Xception": {"application": "Xception", "preprocess_module": "xception"}
                },
            },
            "Xception",
        ),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(overrides, message):
    # cxr.config.load is what rules/common.smk runs before any job: schema, checks, protocols.
    with pytest.raises(ConfigError) as error:
        load(bad_config(overrides), {}, SCHEMA)
    assert message in str(error.value)


def test_a_bad_config_stops_the_workflow_before_any_job(tmp_path):
    """The wiring, end to end: a dry run of the Snakefile stops in rules/common.smk with the
    check's message and no traceback, and creates nothing."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(bad_config({"training.architectures": ["NoSuchNet"]})))
    snakemake = os.path.join(os.path.dirname(sys.executable), "snakemake")
    command = [snakemake, "-n", "-s", REPO / "Snakefile", "--directory", tmp_path]
    result = subprocess.run(
        [*command, "--configfile", path], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "training.architectures: unknown architecture 'NoSuchNet'" in output, output[-3000:]
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()
