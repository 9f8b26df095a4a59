"""Config resolution and checks, called directly: each bad setting stops the run with a message
that names its key (the workflow runs the same sequence, cxr.config.load, in rules/common.smk)."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import REPO
from cxr.config import sources_at


def repo_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_sources_at_points_each_source_folder_under_a_root(tmp_path):
    config = repo_config()
    sources = sources_at(config, "synthetic", tmp_path)
    assert sources["covid"]["root"] == str(tmp_path / "covid-chestxray-dataset")
    assert sources["kermany"]["root"] == str(tmp_path / "kermany-normal")
    assert sources["kermany"]["sample"] == 70  # everything else as config says
    original = config["datasets"]["synthetic"]["sources"]["covid"]["root"]
    assert original == "resources/synthetic/covid-chestxray-dataset"  # config left as it was
    shared = sources_at(config, "article_local", Path("/data"))
    assert shared["covid"]["root"] == "/data/covid-chestxray-dataset-2020-03-18"
