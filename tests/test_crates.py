"""The repository's RO-Crate and the run crate's building blocks (cxr.crates); the run crate of
a whole run is checked in tests/test_workflow.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

from crate_validation import validate
from rocrate.rocrate import ROCrate

from conftest import REPO
from cxr import crates


def test_the_repository_crate_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts/write_workflow_crate.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_repository_crate_describes_the_workflow():
    graph = {
        e["@id"]: e for e in json.loads((REPO / "ro-crate-metadata.json").read_text())["@graph"]
    }
    root = graph["./"]
    assert root["mainEntity"] == {"@id": "Snakefile"}
    assert root["license"] == {"@id": "https://spdx.org/licenses/MIT"}
    assert root["conformsTo"] == {"@id": "https://w3id.org/workflowhub/workflow-ro-crate/1.0"}
    workflow = graph["Snakefile"]
    assert set(workflow["@type"]) == {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
    language = graph[workflow["programmingLanguage"]["@id"]]
    assert language["name"] == "Snakemake"
    pinned = next(
        line.split("==")[1] for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("snakemake==")
    )  # fmt: skip
    assert language["version"] == pinned
    assert graph["README.md"]["about"] == {"@id": "./"}
    assert {"tests/", "rules/", "scripts/", "CITATION.cff"} <= set(graph)


def test_the_repository_crate_validates_as_a_workflow_ro_crate(tmp_path):
    assert validate(REPO, "workflow-ro-crate-1.0", tmp_path / "cache") == []


def test_the_validator_finds_a_broken_crate(tmp_path):
    """The check above can fail: a crate whose main workflow has no language does."""
    crate = tmp_path / "broken"
    crate.mkdir()
    (crate / "Snakefile").write_text("rule all:\n    input: []\n")
    metadata = json.loads((REPO / "ro-crate-metadata.json").read_text())
    metadata["@graph"] = [
        {k: v for k, v in e.items() if k != "programmingLanguage"} for e in metadata["@graph"]
    ]
    for entity in metadata["@graph"]:
        if entity["@id"] == "./":
            entity["hasPart"] = [{"@id": "Snakefile"}]
    kept = {"./", "ro-crate-metadata.json", "Snakefile"}
    metadata["@graph"] = [
        e for e in metadata["@graph"] if e["@id"] in kept or e["@id"].startswith(("#", "http"))
    ]
    (crate / "ro-crate-metadata.json").write_text(json.dumps(metadata))
    issues = validate(crate, "workflow-ro-crate-1.0", tmp_path / "cache")
    assert any("programmingLanguage" in i for i in issues), issues


def test_a_zip_depends_on_the_contents_only(tmp_path):
    def build(name: str, mtime: int) -> bytes:
        src = tmp_path / name
        src.mkdir()
        for file, text in (("b.txt", "two"), ("a.txt", "one")):
            (src / file).write_text(text)
            os.utime(src / file, (mtime, mtime))
        crate = ROCrate(gen_preview=False, version=crates.RO_CRATE_VERSION)
        crate.add_file(src / "b.txt", dest_path="b.txt")
        crate.add_file(src / "a.txt", dest_path="a.txt")
        crate.root_dataset["datePublished"] = "2020-01-01"
        return crates.write_zip(crate, tmp_path / f"{name}.zip").read_bytes()

    first, second = build("x", 1_000_000), build("y", 2_000_000_000)
    assert first == second
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        names = archive.namelist()
        assert names == sorted(names) == ["a.txt", "b.txt", "ro-crate-metadata.json"]
        assert {i.date_time for i in archive.infolist()} == {crates.ZIP_TIME}


def test_run_files_are_the_reviewers_files_in_a_fixed_order(tmp_path):
    for path in (
        "results/report.html", "results/measured.json", "results/patient/eval/summary.json",
        "results/patient/eval/MobileNet/seed0.json", "results/patient/eval/MobileNet/seed0.roc.png",
        "results/shards/train-0.tfrecord",
    ):  # fmt: skip
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    assert crates.run_files(tmp_path) == [
        "results/report.html",
        "results/measured.json",
        "results/patient/eval/summary.json",
        "results/patient/eval/MobileNet/seed0.json",
    ]
