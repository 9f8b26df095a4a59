"""Protocols from the validated config: defaults, runs and their names, and the checks that name
the key."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from conftest import validated, validated_config
from cxr.errors import ConfigError
from cxr.protocols import Protocol, protocols_to_run, run_name


@pytest.fixture()
def config():
    return validated_config()


def test_default_protocols_and_their_runs(config):
    protocols = protocols_to_run(config)
    assert list(protocols) == ["article", "patient", "no_marks", "learning_curve"]
    article = protocols["article"]
    assert article.split == "image" and article.seeds == (0,)
    assert [r.name for r in article.runs()] == ["seed0"]
    patient = protocols["patient"]
    assert patient.fractions == config["splits"] and patient.split_seed == config["seed"]
    assert patient.seeds == tuple(config["training"]["seeds"])
    assert protocols["no_marks"].exclude_marks
    curve = protocols["learning_curve"]
    names = [r.name for r in curve.runs()]
    assert names[:2] == ["f025-seed0", "f025-seed1"] and names[-1] == "f100-seed1"
    assert len(names) == 4 * 2
    assert curve.run("f050-seed1").train_fraction == 0.5


def test_run_names():
    assert run_name(3) == "seed3"
    assert run_name(0, 0.25) == "f025-seed0"
    assert run_name(2, 1.0) == "f100-seed2"


def test_a_user_protocol_in_config_only(config):
    config["protocols"]["test30"] = {"split": "patient", "split_seed": 7, "fractions":
                                     {"train": 0.6, "val": 0.1, "test": 0.3}}  # fmt: skip
    config["protocols"]["run"].append("test30")
    protocol = protocols_to_run(validated(config))["test30"]  # the schema fills in the rest
    assert protocol.split_seed == 7 and protocol.fractions["test"] == 0.3
    assert protocol.seeds == tuple(config["training"]["seeds"]) and not protocol.exclude_marks


def test_a_protocol_has_no_defaults_of_its_own():
    with pytest.raises(TypeError, match="missing"):  # the schema's are the only ones
        Protocol(name="p", split="patient")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["protocols"].update(run=["nope"]), "protocols.nope is not defined"),
        (lambda c: c["protocols"].update(run=["patient", "patient"]), "twice"),
        (lambda c: c["protocols"].update(run=[]), "empty"),
        (lambda c: c["protocols"].update(primary="article", run=["patient"]), "primary"),
        (
            lambda c: c["protocols"]["patient"].update(
                fractions={"train": 0.5, "val": 0.1, "test": 0.3}
            ),
            "sum to 1",
        ),  # fmt: skip
        (lambda c: c["protocols"]["patient"].update(split="random"), "split must be"),
        (
            lambda c: c["protocols"]["learning_curve"].update(train_fractions=[0.333]),
            "whole percentage",
        ),  # fmt: skip
        (lambda c: c["protocols"]["learning_curve"].update(train_fractions=[0.5, 0.5]), "twice"),
        (lambda c: c["protocols"]["article"].update(seeds=[1, 1]), "seed twice"),
        (
            lambda c: c["protocols"]["article"].update(training={"image_size": 128}),
            "cannot differ between protocols",
        ),  # fmt: skip
    ],
)
def test_bad_protocols_name_the_key(config, change, message):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(ConfigError, match=message):
        protocols_to_run(bad)


def test_reserved_names_are_refused(config):
    config["protocols"]["shards"] = {"split": "patient"}
    with pytest.raises(ConfigError, match="results/<name>"):
        Protocol.from_config("shards", validated(config))


def test_head_settings_may_differ(config):
    config["protocols"]["article"]["training"] = {"epochs": 3}
    assert protocols_to_run(config)["article"].training == {"epochs": 3}


def test_repeats_seed_the_splits_from_the_protocols_own(config):
    config["protocols"]["patient"]["repeats"] = 3
    config["protocols"]["article"]["repeats"] = 3
    protocols = protocols_to_run(config)
    patient, article = protocols["patient"], protocols["article"]
    # Repeat 0 is the protocol's own split; both protocols pair up repeat by repeat.
    assert patient.repeat_seeds() == [config["seed"], config["seed"] + 1, config["seed"] + 2]
    assert article.repeat_seeds() == patient.repeat_seeds()
    assert patient.repeat_run.seed == patient.seeds[0]
    assert protocols["no_marks"].repeats == 0 and protocols["no_marks"].repeat_seeds() == []


def test_repeats_and_a_learning_curve_do_not_combine(config):
    config["protocols"]["learning_curve"]["repeats"] = 5
    with pytest.raises(ConfigError, match="protocols.learning_curve: repeats and train_fract"):
        protocols_to_run(config)


def test_repeated_splits_are_the_protocols_split_with_each_seed():
    from cxr.split import repeated_splits, split_protocol

    images = pd.DataFrame(
        {
            "id": [f"i{k}" for k in range(60)],
            "patient": [f"p{k // 2}" for k in range(60)],
            "label": ["covid" if k % 4 < 2 else "normal" for k in range(60)],
            "y": [1 if k % 4 < 2 else 0 for k in range(60)],
            "source": "s",
            "role": "train",
        }
    )
    settings = {"protocol": "patient", "method": "patient", "seed": 7,
                "fractions": {"train": 0.7, "val": 0.1, "test": 0.2}}  # fmt: skip
    table, summary = repeated_splits(images, settings, None, [7, 8, 9])
    assert [r["split_seed"] for r in summary["repeats"]] == [7, 8, 9]
    assert len(table) == 3 * len(images)  # every image in every repeat
    own = split_protocol(images, settings, None)[0]
    first = table[table["repeat"] == 0].drop(columns=["repeat", "split_seed"])
    assert first.reset_index(drop=True).equals(own.reset_index(drop=True))
    tests = [
        set(table[(table["repeat"] == k) & (table["split"] == "test")]["id"]) for k in range(3)
    ]
    assert tests[0] != tests[1] and tests[1] != tests[2]  # other draws, other test sets
    for k in range(3):  # patient-disjoint in every repeat
        part = table[table["repeat"] == k]
        assert part.groupby("patient")["split"].nunique().max() == 1
