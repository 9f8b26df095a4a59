"""Config resolution and the checks a JSON schema cannot express, run before any job starts:
`load` is the whole sequence that rules/common.smk runs."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from cxr.architectures import check_architectures
from cxr.errors import ConfigError
from cxr.protocols import Protocol, protocols_to_run
from cxr.split import check_fractions


def deep_merge(base: dict, override: dict) -> dict:
    """Return `base` with `override` merged in (nested dicts merged, other values replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(config: dict) -> dict:
    """Merge the chosen dataset's overrides into the top level, so rules read one place."""
    name = config.get("dataset")
    datasets = config.get("datasets") or {}
    if name not in datasets:
        raise ConfigError(
            f"dataset {name!r} is not defined under `datasets`; choose one of {sorted(datasets)}"
        )
    return deep_merge(config, datasets[name].get("overrides") or {})


def load(
    config: dict, overrides: dict, schema: str | os.PathLike
) -> tuple[dict, dict[str, Protocol]]:
    """What the workflow makes of its config before any job: the chosen dataset's overrides
    merged in, the user's --config `overrides` over them, the JSON `schema` checked (its
    defaults filled in), the cross-field checks; returns (config, protocols to run). A bad
    setting raises ConfigError naming its key."""
    from snakemake.utils import update_config

    resolved = resolve(config)
    # A dataset's overrides set its defaults; what the user passes with --config still wins.
    update_config(resolved, copy.deepcopy(overrides))
    validate_schema(resolved, schema)
    check(resolved)
    return resolved, protocols_to_run(resolved)


def validate_schema(config: dict, schema: str | os.PathLike) -> None:
    """Check `config` against the JSON schema (YAML) at `schema` and fill in its defaults, as
    snakemake.utils.validate does; an error names the key and the schema's complaint."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema=str(schema), set_default=True)
    except WorkflowError as error:
        cause = error.__context__  # validate raises while handling jsonschema's error
        if not isinstance(cause, jsonschema.ValidationError):
            raise ConfigError(str(error)) from None
        key = ".".join(str(part) for part in cause.absolute_path) or "config"
        raise ConfigError(f"{key}: {cause.message} (see {Path(schema).name})") from None


def check(config: dict) -> None:
    """Cross-field checks: fractions sum to 1, architectures exist, sizes fit, sources usable."""
    check_fractions(config["splits"])
    training = config["training"]
    check_architectures(
        training["architectures"],
        training.get("extra_architectures"),
        image_size=training["image_size"],
        where="training.",
    )
    if config["audit"]["auc_warn"] > config["audit"]["auc_flag"]:
        raise ConfigError("audit.auc_warn must not exceed audit.auc_flag")
    if training["weights"] == "imagenet":
        from cxr.weights import NOTOP_WEIGHTS

        fetchable = {name.lower() for name in NOTOP_WEIGHTS}
        missing = [a for a in training["architectures"] if a.lower() not in fetchable]
        if missing:
            raise ConfigError(
                f"training.weights is imagenet but no ImageNet weight file is registered for "
                f"{missing} (known: {sorted(NOTOP_WEIGHTS)}); add it to cxr/weights.py or use "
                "weights: none"
            )
    if config["audit"]["architecture"] not in (None, *training["architectures"]):
        raise ConfigError("audit.architecture must be one of training.architectures or null")
    sources = dataset(config)["sources"]
    labels = {config["labels"]["positive"], config["labels"]["negative"]}
    for name, spec in sources.items():
        if spec["label"] not in labels:
            raise ConfigError(
                f"sources.{name}.label {spec['label']!r} is neither labels.positive nor "
                f"labels.negative ({sorted(labels)})"
            )
        if spec["kind"] == "folder" and "patient_pattern" not in spec:
            raise ConfigError(f"sources.{name}: a folder source needs patient_pattern")
    trained = {s["label"] for s in sources.values() if s.get("role", "train") == "train"}
    if trained != labels:
        raise ConfigError(
            f"dataset {config['dataset']!r} must have a training source for each label "
            f"{sorted(labels)}; it has {sorted(trained)}"
        )


def dataset(config: dict) -> dict[str, Any]:
    return config["datasets"][config["dataset"]]


def sources_at(config: dict, dataset: str, root: str | os.PathLike) -> dict[str, dict]:
    """The `sources` of `dataset`, each source's folder taken by its name from under `root`
    instead of where config says (a generated data set, a copy in another place)."""
    sources = copy.deepcopy(config["datasets"][dataset]["sources"])
    for spec in sources.values():
        spec["root"] = str(Path(root) / Path(spec["root"]).name)
    return sources
