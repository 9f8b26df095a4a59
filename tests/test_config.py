"""Config resolution and checks, called directly: each bad setting stops the run with a message
that names its key (the workflow runs the same sequence, cxr.config.load, in rules/common.smk)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SCHEMA, repo_config, validated
from cxr.config import check, load, replaced_overrides, resolve, sources_at, user_settings
from cxr.errors import ConfigError


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
    check(validated(resolve(repo_config())))


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
        (
            {"datasets.synthetic.annotations.applies_to": ["covid", "covid_2021"]},
            "annotations.applies_to names 'covid_2021', which is not a source of the dataset",
        ),
        (
            {"datasets.synthetic.annotations.applies_to": ["kermany"]},
            "annotations.applies_to names 'kermany', a folder source",
        ),
        # Bounds the schema cannot state: NaN passes every comparison; a side from its pixels.
        ({"training.learning_rate": float("nan")}, "training.learning_rate is nan; give a finite"),
        ({"evaluation.threshold": float("inf")}, "evaluation.threshold is inf; give a finite"),
        (
            {"shards.image_size": 100000},
            "shards.image_size 100000 gives 10000000000 pixels per image, more than "
            "curation.max_pixels (50000000); use a side of at most 7071",
        ),
        (
            {"training.image_size": 3000, "curation.max_pixels": 4000000},
            "training.image_size 3000 gives 9000000 pixels per image",
        ),
    ],
)  # fmt: skip
def test_each_check_names_its_key(changes, message):
    config = changed(validated(resolve(repo_config())), changes)
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
        validated(resolve(repo_config())),
        {"datasets.synthetic.sources.kermany.patient_pattern": pattern},
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
        validated(resolve(repo_config())),
        {"datasets.synthetic.sources.kermany.patient_pattern": pattern},
    )
    check(config)


def test_load_runs_what_the_workflow_runs():
    config = changed(repo_config(), {"dataset": "article_local", "evaluation.bootstrap": DELETE})
    loaded, protocols = load(config, {"training": {"epochs": 3}}, SCHEMA)
    assert loaded["training"]["epochs"] == 3  # --config wins over the dataset's overrides (25)
    assert loaded["training"]["image_size"] == 224  # the dataset's override
    assert loaded["evaluation"]["bootstrap"] == 1000  # the schema's default
    assert list(protocols) == ["article", "patient", "no_marks", "learning_curve"]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_user_settings_are_the_users_configfiles_then_config(tmp_path):
    # The workflow's own config.yaml holds defaults, even when given with --configfile (as one
    # must when running in another directory); the user's files merge in order, --config last.
    first = _write(tmp_path / "a.yaml", {"dataset": "article_local", "training": {"epochs": 5}})
    second = _write(tmp_path / "b.yaml", {"training": {"seeds": [0], "epochs": 6}})
    settings = user_settings(
        [REPO / "config.yaml", first, second],
        {"training": {"epochs": 7}},
        defaults=[REPO / "config.yaml", "config.yaml"],
    )
    assert settings == {"dataset": "article_local", "training": {"epochs": 7, "seeds": [0]}}
    assert user_settings([REPO / "config.yaml"], {}, defaults=[REPO / "config.yaml"]) == {}


def test_a_users_configfile_wins_over_the_datasets_overrides(tmp_path):
    # The case: {dataset: article_local, training: {epochs: 5}} ended with 25 epochs.
    user = _write(tmp_path / "user.yaml", {"dataset": "article_local", "training": {"epochs": 5}})
    config = repo_config() | {"dataset": "article_local"}  # as Snakemake merged it
    config["training"] = {**config["training"], "epochs": 5}
    settings = user_settings([REPO / "config.yaml", user], {}, defaults=[REPO / "config.yaml"])
    loaded, _ = load(config, settings, SCHEMA)
    assert loaded["training"]["epochs"] == 5
    assert loaded["training"]["image_size"] == 224  # the dataset's overrides fill in the rest
    assert loaded["training"]["seeds"] == [0, 1, 2]
    assert replaced_overrides(config, settings) == [
        "training.epochs: 5 (your setting) over 25 (dataset article_local's overrides)"
    ]


def _dry_run(tmp_path: Path, *args: str) -> str:
    """`snakemake -n` of the repository's Snakefile in tmp_path; its output (must succeed)."""
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [snakemake, "-n", "-s", REPO / "Snakefile", "--directory", tmp_path, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.fixture
def article_roots(tmp_path) -> Path:
    """A file pointing article_local's sources at empty folders (a dry run needs them only to
    exist), and overrides that run the article protocol, which the user may turn off."""
    sources = {}
    for name in ("covid", "kermany", "nih"):
        (tmp_path / name).mkdir()
        sources[name] = {"root": str(tmp_path / name)}
    overrides = {"protocols": {"run": ["article", "patient"]}}
    return _write(
        tmp_path / "roots.yaml",
        {"datasets": {"article_local": {"sources": sources, "overrides": overrides}}},
    )


def _jobs(output: str) -> set[str]:
    """Paths of the dry run's jobs' outputs under results/."""
    return set(re.findall(r"results/[^\s,]+", output))


def test_a_dry_run_keeps_what_the_user_wrote_in_a_configfile(tmp_path, article_roots):
    user = _write(
        tmp_path / "user.yaml",
        {"dataset": "article_local", "training": {"epochs": 5, "seeds": [0]},
         "protocols": {"run": ["patient"]}},
    )  # fmt: skip
    output = _dry_run(tmp_path, "--configfile", REPO / "config.yaml", article_roots, user)
    assert "training.epochs: 5 (your setting) over 25 (dataset article_local's overrides)" in output
    jobs = _jobs(output)
    assert "results/patient/models/DenseNet121/seed0/model.keras" in jobs
    assert not [j for j in jobs if "seed1" in j or "seed2" in j]  # the dataset says [0, 1, 2]
    assert not [j for j in jobs if j.startswith("results/article/")]


def test_a_dry_run_keeps_what_the_user_wrote_with_config(tmp_path, article_roots):
    # --config turns nested numbers into strings; a list of names is what it can set.
    output = _dry_run(
        tmp_path, "--configfile", REPO / "config.yaml", article_roots,
        "--config", "dataset=article_local", "protocols={run: [patient]}",
    )  # fmt: skip
    assert "protocols.run: ['patient'] (your setting) over ['article', 'patient']" in output
    jobs = _jobs(output)
    assert "results/patient/splits/splits.csv" in jobs
    assert not [j for j in jobs if j.startswith("results/article/")]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"training.learnig_rate": 0.1}, "training: Additional properties are not allowed"),
        ({"training.epochs": 0}, "training.epochs: 0 is less than the minimum of 1"),
        ({"seed": -5}, "seed: -5 is less than the minimum of 0"),
        ({"training.learning_rate": 5.0}, "training.learning_rate: 5.0 is greater than the maxi"),
        (
            {"protocols.patient.training": {"learning_rate": float("nan")}},
            "protocols.patient.training.learning_rate is nan",
        ),
        ({"protocols.run": ["patient", "nope"]}, "protocols.nope is not defined"),
    ],
)
def test_load_names_the_key_of_a_schema_or_protocol_error(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(changed(repo_config(), changes), {}, SCHEMA)
