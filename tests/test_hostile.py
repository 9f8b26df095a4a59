"""Hostile inputs: every broken row or file is logged with its reason (never a crash, never a
silent drop), and bad settings stop the run before any job, naming the key."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO, curation_rules
from cxr.config import load
from cxr.curate import curate
from cxr.errors import ConfigError, DataError
from cxr.images import ImageRejected, load_image
from cxr.io import write_csv
from workflow import run_workflow

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
        "covid": {"kind": "ieee8023", "root": str(covid), "label": "covid", "role": "train"},
        "normal": {
            "kind": "folder",
            "root": str(folder),
            "label": "normal",
            "role": "train",
            "patient_pattern": r"(?:NORMAL2-)?(IM-\d{4})",
        },  # fmt: skip
    }
    return sources


def test_every_input_is_accounted_for_with_a_reason(hostile):
    images, exclusions, flow = curate(hostile, curation_rules(max_pixels=10_000_000), seed=0)
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
                          "role": "train", "patient_pattern": pattern}}  # fmt: skip
    images, exclusions, _ = curate(sources, curation_rules(), seed=0)
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


# Round two (issue 11): rows the CSV parser rejects, names no file system holds, names that are
# not UTF-8, entries the loaders never listed, and metadata names that match a file only once
# normalised. Each writes its hostile inputs here.


def covid_source(root, lines, header=HEADER, images=()):
    """An ieee8023 source at `root`: metadata.csv of `header` + `lines` (text, as given) and a
    decodable image for each name in `images` (under images/ unless the name has a folder)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(images):
        path = root / (name if "/" in name else f"images/{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        gray(path, seed=100 + i)
    (root / "metadata.csv").write_text(header + "".join(lines), encoding="utf-8")
    return {"kind": "ieee8023", "root": str(root), "label": "covid", "role": "train"}


def normal_source(root):
    root.mkdir(parents=True, exist_ok=True)
    gray(root / "IM-0001-0001.jpeg", seed=50)
    return {"kind": "folder", "root": str(root), "label": "normal", "role": "train",
            "patient_pattern": r"(IM-\d{4})"}  # fmt: skip


def curate_covid(tmp_path, spec):
    """Curate `spec` beside a one-image normal source; every input is accounted for."""
    sources = {"covid": spec, "normal": normal_source(tmp_path / "normal")}
    images, exclusions, flow = curate(sources, curation_rules(), seed=0)
    assert len(images) + len(exclusions) == flow["total"]
    return images[images["source"] == "covid"], exclusions[exclusions["source"] == "covid"]


def by_file(frame, column="reason"):
    return dict(zip(frame["file"], frame[column], strict=True))


def row(pid, file, notes="", view="PA"):
    return f'{pid},0,COVID-19,{view},X-ray,{file},"{notes}"\n'


@pytest.mark.parametrize(
    "bad, problem",
    [
        ("3,0,COVID-19,PA,X-ray,c.png,fever, cough\n", "8 fields, the header has 7"),
        ('3,0,COVID-19,PA,X-ray,c.png,"quoted",extra\n', "8 fields, the header has 7"),
        ("3,0,COVID-19,PA,X-ray,c.png,,,,x\n", "10 fields, the header has 7"),
        ('3,0,COVID-19,PA,X-ray,c.png,"5" tall\n', "a quote ends a field and more text"),
    ],
)
def test_a_row_the_csv_parser_rejects_is_excluded_naming_its_line(tmp_path, bad, problem):
    """An unquoted comma (a field too many) or a stray quote in a one-line row: where the row
    ends is certain, so only that row is lost, and the log says why and where."""
    spec = covid_source(tmp_path / "covid", [row(1, "a.png"), bad, row(4, "d.png")],
                        images=["a.png", "c.png", "d.png"])  # fmt: skip
    images, exclusions = curate_covid(tmp_path, spec)
    assert set(images["file"]) == {"images/a.png", "images/d.png"}  # the other rows still read
    bad_row = exclusions.set_index("record").loc["metadata.csv:line 3"]
    assert (bad_row["step"], bad_row["reason"]) == ("source", "malformed row")
    assert problem in bad_row["detail"]
    assert bad_row["detail"].endswith("Fix line 3 of metadata.csv to use this row.")
    # The row cannot say which file it names: its image is logged on its own, not lost.
    assert by_file(exclusions)["images/c.png"] == "no metadata row"


def test_trailing_empty_fields_are_not_a_shifted_row(tmp_path):
    """Every row ends with a comma the header lacks (a spreadsheet export): the rows read as
    the header says (pandas took the first column as an index and shifted every value)."""
    lines = [row(1, "a.png").rstrip("\n") + ",\n", row(2, "b.png").rstrip("\n") + ",,\n"]
    spec = covid_source(tmp_path / "covid", lines, images=["a.png", "b.png"])
    images, exclusions = curate_covid(tmp_path, spec)
    assert sorted(images["patient"]) == ["covid:1", "covid:2"], exclusions.to_dict("records")
    assert set(images["view"]) == {"PA"}


@pytest.mark.parametrize(
    "lines, line",
    [
        ([row(1, "a.png"), '2,0,COVID-19,PA,X-ray,b.png,"fever\n', row(3, "c.png")], 3),
        ([row(1, "a.png"), row(2, "b.png"), '3,0,COVID-19,PA,X-ray,c.png,"no end'], 4),
        ([row(1, "a.png"), '2,0,COVID-19,PA,X-ray,b.png,"a\n"b\n', row(3, "c.png")], 4),
        (['1,0,COVID-19,PA,X-ray,a.png,"open\r\n', row(2, "b.png"), row(3, "c.png", "shut")], 4),
    ],
)
def test_an_unbalanced_quote_stops_the_run_naming_file_line_and_remedy(tmp_path, lines, line):
    """A quote that never closes (or closes in the middle of a later row) leaves every row
    after it in doubt: a DataError names the file and line and says what to do."""
    spec = covid_source(tmp_path / "covid", lines, images=["a.png", "b.png", "c.png"])
    with pytest.raises(DataError) as error:
        curate_covid(tmp_path, spec)
    message = str(error.value)
    assert f"{tmp_path / 'covid' / 'metadata.csv'}, line {line}:" in message
    assert 'Close the quote, or write a quote inside a field as two ("")' in message


def test_a_field_over_the_csv_modules_size_limit_is_read(tmp_path):
    notes = "x" * (csv.field_size_limit() + 10)
    spec = covid_source(tmp_path / "covid", [row(1, "a.png", notes=notes)], images=["a.png"])
    limit = csv.field_size_limit()
    images, _ = curate_covid(tmp_path, spec)
    assert images["notes"].tolist() == [notes]
    assert csv.field_size_limit() == limit  # the module's global setting is left as it was


@pytest.mark.parametrize(
    "filename, reason",
    [
        ("n" * 300 + ".png", "file name too long"),  # a shifted row puts the notes there
        ("/".join(["folder"] * 700) + "/x.png", "file name too long"),  # short parts, long path
        ("a\x00b.png", "file name has a NUL byte"),
        ("images/\x00", "file name has a NUL byte"),
    ],
)
def test_names_no_file_system_can_hold_are_excluded_with_a_reason(tmp_path, filename, reason):
    spec = covid_source(tmp_path / "covid", [row(1, "a.png"), row(2, filename)], images=["a.png"])
    images, exclusions = curate_covid(tmp_path, spec)
    assert images["file"].tolist() == ["images/a.png"]
    bad = exclusions.set_index("record").loc["metadata.csv:line 3"]
    assert (bad["step"], bad["reason"]) == ("image", reason)
    assert len(bad["detail"]) < 200  # the name is shown cut short, not as a paragraph


def test_names_that_are_not_utf8_are_excluded_with_the_name_escaped(tmp_path):
    """Archives from other systems hold Latin-1 or CP-437 names. They are excluded (the
    name is the image's id in every later file, and no metadata row can name it), shown with
    the bytes escaped, and every output still writes as UTF-8."""
    spec = covid_source(tmp_path / "covid", [row(1, "a.png")], images=["a.png"])
    root = os.fsencode(tmp_path / "covid")
    gray(os.fsdecode(root + b"/images/caf\xe9.png"), seed=3)
    os.mkdir(root + b"/images/d\xfcr")
    gray(os.fsdecode(root + b"/images/d\xfcr/x.png"), seed=4)
    normal = normal_source(tmp_path / "normal")
    gray(os.fsdecode(os.fsencode(tmp_path / "normal") + b"/IM-0002-0001 \x81.jpeg"), seed=5)
    images, exclusions, flow = curate({"covid": spec, "normal": normal}, curation_rules(), seed=0)
    assert len(images) + len(exclusions) == flow["total"] == (1 + 2) + (1 + 1)
    reasons = by_file(exclusions)
    details = by_file(exclusions, "detail")
    for name in ["images/caf\\xe9.png", "images/d\\xfcr/x.png", "IM-0002-0001 \\x81.jpeg"]:
        assert reasons[name] == "file name not UTF-8", name
        assert name in details[name] and "rename it in UTF-8" in details[name]
    write_csv(tmp_path / "images.csv", images)
    write_csv(tmp_path / "exclusions.csv", exclusions)
    assert "caf\\xe9" in (tmp_path / "exclusions.csv").read_text(encoding="utf-8")


def test_every_entry_under_a_root_is_in_the_log_with_its_reason(tmp_path):
    """Hidden files and folders, FIFOs, images in nested folders that no row names, stray
    files beside metadata.csv, and links: the accounting is checked against a walk of the root,
    not against what the loaders listed."""
    covid = tmp_path / "covid"
    spec = covid_source(covid, [row(1, "a.png")],
                        images=["a.png", "images/sub/deep.png", "extra/e.png"])  # fmt: skip
    gray(covid / "top.png", seed=3)
    gray(covid / "images/.hidden.png", seed=1)
    (covid / ".git/objects").mkdir(parents=True)
    (covid / ".git/objects/x").write_text("blob")
    (covid / "README.md").write_text("# the upstream readme")
    os.mkfifo(covid / "images/pipe.png")
    (covid / "images/to-a.png").symlink_to(covid / "images/a.png")
    (tmp_path / "elsewhere").mkdir()
    (covid / "images/out").symlink_to(tmp_path / "elsewhere")
    (covid / "images/inside").symlink_to(covid / "extra")
    normal = normal_source(tmp_path / "normal")
    (tmp_path / "normal/.DS_Store").write_bytes(b"\0")
    (tmp_path / "normal/.thumbs").mkdir()
    gray(tmp_path / "normal/.thumbs/IM-0009-0001.jpeg", seed=9)
    (tmp_path / "normal/sub").mkdir()
    gray(tmp_path / "normal/sub/IM-0002-0001.jpeg", seed=2)
    os.mkfifo(tmp_path / "normal/IM-0003-0001.jpeg")
    images, exclusions, flow = curate({"covid": spec, "normal": normal}, curation_rules(), seed=0)
    assert len(images) + len(exclusions) == flow["total"] == (1 + 10) + 5
    assert by_file(exclusions) == {
        "images/sub/deep.png": "no metadata row",
        "extra/e.png": "no metadata row",
        "top.png": "no metadata row",
        "images/to-a.png": "no metadata row",
        "images/.hidden.png": "hidden file",
        ".git": "hidden folder",
        "README.md": "not an image file name (.md)",
        "images/pipe.png": "not a regular file",
        "images/out": "path outside data root",
        "images/inside": "not a regular file",
        ".DS_Store": "hidden file",
        ".thumbs": "hidden folder",
        "IM-0003-0001.jpeg": "not a regular file",
    }
    assert set(images["file"]) == {"images/a.png", "IM-0001-0001.jpeg", "sub/IM-0002-0001.jpeg"}


def test_a_folder_column_linking_outside_the_root_lists_and_reads_nothing_there(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    gray(outside / "named.png", seed=1)
    gray(outside / "secret.png", seed=2)
    header = "patientid,finding,view,modality,folder,filename\n"
    lines = ["1,COVID-19,PA,X-ray,images,a.png\n", "2,COVID-19,PA,X-ray,linked,named.png\n"]
    spec = covid_source(tmp_path / "covid", lines, header=header, images=["a.png"])
    (tmp_path / "covid/linked").symlink_to(outside)
    images, exclusions = curate_covid(tmp_path, spec)
    assert images["file"].tolist() == ["images/a.png"]
    assert by_file(exclusions) == {
        "linked/named.png": "path outside data root",  # the row, refused when resolved
        "linked": "path outside data root",  # the link itself, never walked into
    }
    assert not exclusions["file"].str.contains("secret").any()


def test_a_row_naming_a_link_inside_the_root_is_read_as_its_target(tmp_path):
    """Curation follows a link that stays inside the root and records the file it decoded as
    the image's `path`, so every later job (whose opener refuses links) reads that file."""
    spec = covid_source(tmp_path / "covid", [row(1, "to-a.png")], images=["a.png"])
    (tmp_path / "covid/images/to-a.png").symlink_to("a.png")
    images, exclusions = curate_covid(tmp_path, spec)
    assert images["file"].tolist() == ["images/to-a.png"]
    path = Path(images["path"].iloc[0])
    assert path == tmp_path / "covid/images/a.png"
    assert load_image(path, max_pixels=10**7)[1].pixel_sha256 == images["sha256"].iloc[0]
    with pytest.raises(ImageRejected, match="a symbolic link, not followed"):
        load_image(tmp_path / "covid/images/to-a.png", max_pixels=10**7)
    assert by_file(exclusions) == {"images/a.png": "no metadata row"}


def test_a_metadata_name_matches_its_file_once_normalised(tmp_path):
    """'./x.png', 'x.png ' and a name in NFC for a file saved in NFD (macOS) each name one
    file, which is included once and not also logged as having no metadata row."""
    nfd = unicodedata.normalize("NFD", "röntgen.png")
    lines = [row(1, "./a.png"), row(2, "b.png "), row(3, "röntgen.png"), row(4, "./sub//c.png")]
    files = ["a.png", "b.png", nfd, "images/sub/c.png"]
    spec = covid_source(tmp_path / "covid", lines, images=files)
    assert (tmp_path / "covid/images" / nfd).exists() and nfd != "röntgen.png"
    images, exclusions = curate_covid(tmp_path, spec)
    assert sorted(images["file"]) == sorted(
        ["images/a.png", "images/b.png", f"images/{nfd}", "images/sub/c.png"]
    )
    assert exclusions.empty, exclusions.to_dict("records")


def test_accounting_names_the_entries_no_loader_listed(tmp_path, monkeypatch):
    """An adapter that forgets a file (or lists one twice) fails the run, naming it."""
    from cxr.sources import folder

    spec = normal_source(tmp_path / "normal")
    gray(tmp_path / "normal/IM-0002-0001.jpeg", seed=2)
    covid = covid_source(tmp_path / "covid", [row(1, "a.png")], images=["a.png"])
    load = folder.load_records
    monkeypatch.setattr(folder, "load_records", lambda *a: load(*a).iloc[:1])
    with pytest.raises(AssertionError, match=r"in neither .*'IM-0002-0001\.jpeg'"):
        curate({"covid": covid, "normal": spec}, curation_rules(), seed=0)
    monkeypatch.setattr(folder, "load_records", lambda *a: load(*a).iloc[[0, 1, 1]])
    with pytest.raises(AssertionError, match=r"counted twice: 'IM-0002-0001\.jpeg'"):
        curate({"covid": covid, "normal": spec}, curation_rules(), seed=0)


@pytest.mark.slow
def test_an_edit_under_a_source_root_reruns_curation(tmp_path):
    """Snakemake sees a source as its root folder (here the generator's marker): a view edited
    in place in metadata.csv, or an image added in a subfolder, must rerun curation, through
    the listing of each root that every run refreshes before the DAG is built."""
    until = ("--until", "curate_images")
    run_workflow(tmp_path, "tiny.yaml", extra=until)
    curated = tmp_path / "results/curated"
    images = pd.read_csv(curated / "images.csv", dtype=str, keep_default_na=False)
    target = images[images["source"] == "covid"].iloc[0]
    root = tmp_path / "resources/synthetic/covid-chestxray-dataset"
    with open(root / "metadata.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    column = {name: i for i, name in enumerate(rows[0])}
    (edited,) = [r for r in rows[1:] if f"images/{r[column['filename']]}" == target["file"]]
    assert edited[column["view"]] == "PA"
    edited[column["view"]] = "AP"
    with open(root / "metadata.csv", "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)  # the same file, in place
    (root / "images/later").mkdir()
    gray(root / "images/later/added.png", seed=7)

    dry = run_workflow(tmp_path, "tiny.yaml", extra=("-n", *until))
    plan = dry.stdout + dry.stderr
    assert "rule curate_images:" in plan and "Updated input files" in plan, plan[-3000:]
    run_workflow(tmp_path, "tiny.yaml", extra=until)
    exclusions = pd.read_csv(curated / "exclusions.csv", dtype=str, keep_default_na=False)
    reasons = by_file(exclusions)
    assert reasons[target["file"]] == "view 'AP', not PA"
    assert reasons["images/later/added.png"] == "no metadata row"
    again = run_workflow(tmp_path, "tiny.yaml", extra=("-n", *until))
    assert "rule curate_images:" not in again.stdout + again.stderr  # unchanged: no rewrite
