"""Config resolution and checks, called directly: each bad setting stops the run with a message
that names its key (the workflow runs the same sequence, cxr.config.load, in rules/common.smk)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from cxr.config import check, load, resolve, sources_at
from cxr.errors import ConfigError

SCHEMA = REPO / "rules" / "config.schema.yaml"


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


DELETE = object()


def changed(config: dict, changes: dict) -> dict:
    """`config` with dotted keys set to the given values (removed for DELETE)."""
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return config


def test_resolve_merges_the_chosen_datasets_overrides():
    config = changed(repo_config(), {"dataset": "article_local"})
    resolved = resolve(config)
    assert resolved["training"]["image_size"] == 224  # from the dataset's overrides
    assert resolved["training"]["dense_units"] == 64  # untouched keys of a section stay
    assert resolved["shards"] == {"image_size": 256, "count": 4}
    assert config["training"]["image_size"] == 64  # the input is not modified


def test_resolve_names_an_undefined_dataset():
    with pytest.raises(ConfigError, match=r"dataset 'nope' is not defined under `datasets`"):
        resolve(changed(repo_config(), {"dataset": "nope"}))


def test_the_default_config_passes_every_check():
    check(resolve(repo_config()))


XCEPTION = {"Xception": {"application": "Xception", "preprocess_module": "xception"}}
XCEPTION_71 = {"Xception": {**XCEPTION["Xception"], "min_size": 71}}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"splits.train": 0.5}, "splits fractions {'train': 0.5, 'val': 0.1, 'test': 0.2}"),
        ({"splits.train": 0.5, "splits.test": 0.4}, "splits.test = 0.4 cannot be made"),
        ({"training.architectures": ["Foo"]}, "training.architectures: unknown architecture 'Foo'"),
        ({"training.architectures": ["MobileNet"] * 2}, "training.architectures: 'MobileNet' is"),
        ({"training.architectures": []}, "training.architectures: the list is empty"),
        ({"training.image_size": 16}, "training.image_size 16 is too small for MobileNet"),
        (
            {"training.architectures": ["Xception"],
             "training.extra_architectures": XCEPTION_71},
            "training.image_size 64 is too small for Xception",
        ),
        (
            {"training.extra_architectures": {"Mine": {"application": "ResNet50"}}},
            "training.extra_architectures.Mine: 'preprocess_module' is missing",
        ),
        ({"audit.auc_warn": 0.9}, "audit.auc_warn must not exceed audit.auc_flag"),
        (
            {"training.weights": "imagenet", "training.architectures": ["Xception"],
             "training.extra_architectures": XCEPTION, "audit.architecture": None},
            "training.weights is imagenet but no ImageNet weight file is registered for ['Xcep",
        ),
        ({"audit.architecture": "VGG16"}, "audit.architecture must be one of"),
        ({"datasets.synthetic.sources.covid.label": "flu"}, "sources.covid.label 'flu' is neither"),
        (
            {"datasets.synthetic.sources.kermany.patient_pattern": DELETE},
            "sources.kermany: a folder source needs patient_pattern",
        ),
        (
            {"datasets.synthetic.sources.kermany.role": "external"},
            "dataset 'synthetic' must have a training source for each label",
        ),
    ],
)  # fmt: skip
def test_each_check_names_its_key(changes, message):
    config = changed(resolve(repo_config()), changes)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check(config)


@pytest.mark.parametrize(
    "pattern, message",
    [
        ("(IM-", "is not a valid regular expression"),
        (r"IM-\d{4}", "needs a (group) for the patient key"),
        (r"(\d*)_", "can match the empty string"),
        (r"(IM-\d{4}|)", "can match the empty string"),
        (r"(?:NORMAL2-)?(\d{0,4})", "can match the empty string"),
        (r"((?=IM))", "can match the empty string"),
        (r"(IM-\d{4})?", "may take no part in a match"),
        (r"(?:(IM-\d{4})|x)", "may take no part in a match"),
        (r"(?:x(IM-\d+))*", "may take no part in a match"),
        (r"(?!(IM-\d+))", "may take no part in a match"),
    ],
)
def test_a_patient_pattern_that_can_give_an_empty_key_is_refused(pattern, message):
    # Such a pattern gives files the key None or '': all of them one patient, or no patient.
    config = changed(
        resolve(repo_config()), {"datasets.synthetic.sources.kermany.patient_pattern": pattern}
    )
    with pytest.raises(ConfigError) as error:
        check(config)
    assert str(error.value).startswith(f"sources.kermany.patient_pattern {pattern!r}")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "pattern",
    [r"(?:NORMAL2-)?(IM-\d{4})", r"^(\d{8})_\d{3}", r"(.+?)_", r"(?P<key>p\d+)", r"(?=(IM-\d))",
     r"(?>(IM-\d+))", r"(x|y)(z)?", r"(?:a|b)(IM-\d{1,4})+"],
)  # fmt: skip
def test_patient_patterns_whose_key_is_never_empty_pass(pattern):
    config = changed(
        resolve(repo_config()), {"datasets.synthetic.sources.kermany.patient_pattern": pattern}
    )
    check(config)


def test_load_runs_what_the_workflow_runs():
    config = changed(repo_config(), {"dataset": "article_local", "evaluation.bootstrap": DELETE})
    loaded, protocols = load(config, {"training": {"epochs": 3}}, SCHEMA)
    assert loaded["training"]["epochs"] == 3  # --config wins over the dataset's overrides (25)
    assert loaded["training"]["image_size"] == 224  # the dataset's override
    assert loaded["evaluation"]["bootstrap"] == 1000  # the schema's default
    assert list(protocols) == ["article", "patient", "no_marks", "learning_curve"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"training.learnig_rate": 0.1}, "training: Additional properties are not allowed"),
        ({"training.epochs": 0}, "training.epochs: 0 is less than the minimum of 1"),
        ({"protocols.run": ["patient", "nope"]}, "protocols.nope is not defined"),
    ],
)
def test_load_names_the_key_of_a_schema_or_protocol_error(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(changed(repo_config(), changes), {}, SCHEMA)
