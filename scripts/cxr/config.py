"""Config resolution and the checks a JSON schema cannot express, run before any job starts:
`load` is the whole sequence that rules/common.smk runs."""

from __future__ import annotations

import copy
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from re import _parser  # the parse tree re compiles from (sre_parse before 3.11)
from typing import Any

from cxr.architectures import check_architectures
from cxr.errors import ConfigError
from cxr.fractions import check_fractions
from cxr.protocols import Protocol, protocols_to_run


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


def user_settings(
    configfiles: Sequence[str | os.PathLike],
    config: Mapping[str, Any],
    defaults: Sequence[str | os.PathLike],
) -> dict:
    """What the user wrote on the command line, as Snakemake merges it: each of `configfiles`
    (--configfile) in turn, then `config` (--config) over them. A file of `defaults` (the
    workflow's own config.yaml, also when named with --configfile to run elsewhere) is skipped:
    it holds the defaults that a dataset's overrides replace, not the user's settings."""
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    own = {Path(path).resolve() for path in defaults}
    settings: dict = {}
    for path in configfiles:
        if Path(path).resolve() not in own:
            update_config(settings, load_configfile(str(path)))
    update_config(settings, copy.deepcopy(dict(config)))
    return settings


def replaced_overrides(config: dict, overrides: dict) -> list[str]:
    """The chosen dataset's overrides that the user's settings `overrides` replace, one line
    each ('training.epochs: 5 (your setting) over 25 (dataset article_local's overrides)'),
    so that a run says which of its settings are not the dataset's."""
    name = config.get("dataset")
    dataset = (config.get("datasets") or {}).get(name) or {}
    theirs = _leaves(dataset.get("overrides") or {})
    yours = _leaves(overrides)
    return [
        f"{key}: {yours[key]!r} (your setting) over {value!r} (dataset {name}'s overrides)"
        for key, value in theirs.items()
        if key in yours and yours[key] != value
    ]


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as {'training.epochs': 5, ...}."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            leaves.update(_leaves(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = value
    return leaves


def load(
    config: dict, overrides: dict, schema: str | os.PathLike
) -> tuple[dict, dict[str, Protocol]]:
    """What the workflow makes of its config before any job: the chosen dataset's overrides
    merged in, the user's own settings `overrides` (--configfile files and --config, see
    user_settings) over them, the JSON `schema` checked (its defaults filled in), the
    cross-field checks; returns (config, protocols to run). A bad setting raises ConfigError
    naming its key."""
    from snakemake.utils import update_config

    resolved = resolve(config)
    # A dataset's overrides set its defaults; what the user wrote still wins.
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
    """Cross-field checks of the validated `config` (schema defaults filled in): numbers
    finite, fractions sum to 1, architectures exist, sizes fit, sources usable."""
    check_finite(config)
    check_image_sides(config)
    check_fractions(config["splits"])
    training = config["training"]
    check_architectures(
        training["architectures"],
        training["extra_architectures"],
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
    if config["saliency"]["corner_fraction"] > config["audit"]["border_fraction"]:
        raise ConfigError(
            "saliency.corner_fraction must not exceed audit.border_fraction: the corner boxes "
            "lie in the border strip"
        )
    sources = dataset(config)["sources"]
    labels = {config["labels"]["positive"], config["labels"]["negative"]}
    for name, spec in sources.items():
        if spec["label"] not in labels:
            raise ConfigError(
                f"sources.{name}.label {spec['label']!r} is neither labels.positive nor "
                f"labels.negative ({sorted(labels)})"
            )
        if spec["kind"] == "folder":
            if "patient_pattern" not in spec:
                raise ConfigError(f"sources.{name}: a folder source needs patient_pattern")
            check_patient_pattern(name, spec["patient_pattern"])
    check_external(sources, dataset(config)["external_sets"])
    check_annotations(sources, dataset(config).get("annotations"))
    trained = {s["label"] for s in sources.values() if s["role"] == "train"}
    if trained != labels:
        raise ConfigError(
            f"dataset {config['dataset']!r} must have a training source for each label "
            f"{sorted(labels)}; it has {sorted(trained)}"
        )


def check_external(sources: dict[str, dict], external_sets: dict[str, list[str]]) -> None:
    """`same_patients_as` names another source; an external set groups external sources under
    a name no source has."""
    for name, spec in sources.items():
        other = spec.get("same_patients_as")
        if other is not None and (other not in sources or other == name):
            raise ConfigError(
                f"sources.{name}.same_patients_as is {other!r}; it must name another source of "
                f"the dataset ({', '.join(n for n in sources if n != name)})"
            )
    external = [n for n, s in sources.items() if s["role"] == "external"]
    for set_name, members in external_sets.items():
        if set_name in sources:
            raise ConfigError(
                f"external_sets.{set_name}: a source has this name; give the set another one"
            )
        wrong = [m for m in members if m not in external]
        if wrong:
            raise ConfigError(
                f"external_sets.{set_name} names {wrong}, which are not external sources of "
                f"the dataset (external: {external or 'none'})"
            )


def check_finite(value: Any, key: str = "") -> None:
    """No setting is NaN or infinite: the schema's bounds do not refuse them (every comparison
    with NaN is false), and a NaN learning rate or threshold fails only deep in a job."""
    if isinstance(value, dict):
        for name, item in value.items():
            check_finite(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for k, item in enumerate(value):
            check_finite(item, f"{key}[{k}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key} is {value}; give a finite number")


def check_image_sides(config: dict) -> None:
    """Every image side the workflow resizes to fits curation.max_pixels: a square of that side
    holds no more pixels than the largest image curation decodes (a side of 100000 would
    allocate 10^10 pixels per image)."""
    limit = config["curation"]["max_pixels"]
    sides = {
        "shards.image_size": config["shards"]["image_size"],
        "training.image_size": config["training"]["image_size"],
    }
    synthetic = dataset(config).get("synthetic") or {}
    if "image_size" in synthetic:
        sides[f"datasets.{config['dataset']}.synthetic.image_size"] = synthetic["image_size"]
    for key, side in sides.items():
        if side * side > limit:
            raise ConfigError(
                f"{key} {side} gives {side * side} pixels per image, more than "
                f"curation.max_pixels ({limit}); use a side of at most {math.isqrt(limit)}"
            )


def check_annotations(sources: dict[str, dict], annotations: dict | None) -> None:
    """The annotations apply to sources of the dataset, all from the COVID-19 collection (whose
    file names they match)."""
    if annotations is None:
        return
    for name in annotations["applies_to"]:
        if name not in sources:
            raise ConfigError(
                f"annotations.applies_to names {name!r}, which is not a source of the dataset "
                f"({', '.join(sources)})"
            )
        if sources[name]["kind"] != "ieee8023":
            raise ConfigError(
                f"annotations.applies_to names {name!r}, a {sources[name]['kind']} source: the "
                "annotations name files of the COVID-19 collection (kind ieee8023)"
            )


def check_patient_pattern(name: str, pattern: str) -> None:
    """A folder source's patient key is the first group of `patient_pattern` in each file name:
    the pattern must compile, and its first group must take part in every match and match at
    least one character, else files get the key None or '' (all one patient, or none)."""
    where = f"sources.{name}.patient_pattern {pattern!r}"
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"{where} is not a valid regular expression: {exc}") from None
    if compiled.groups < 1:
        raise ConfigError(f"{where} needs a (group) for the patient key, e.g. '(IM-\\d{{4}})'")
    problem = _first_group_problem(_parser.parse(pattern), required=True)
    if problem:
        raise ConfigError(
            f"{where}: its first group, the patient key, {problem}, which gives files an empty "
            "key; make the group match at least one character and take it out of ?, *, | and "
            "negative lookarounds"
        )


def _first_group_problem(tree: Any, required: bool) -> str | None:
    """Walk the parse tree of a pattern to group 1: why it can give an empty key ('' if it
    cannot), or None if group 1 is not under `tree`. `required`: `tree` takes part in every
    match of the pattern."""
    for op, arg in tree:
        if op is _parser.SUBPATTERN:
            group, _, _, inner = arg
            if group == 1:
                if not required:
                    return "may take no part in a match"
                return "can match the empty string" if inner.getwidth()[0] == 0 else ""
            found = _first_group_problem(inner, required)
        elif op in (_parser.MAX_REPEAT, _parser.MIN_REPEAT, _parser.POSSESSIVE_REPEAT):
            low, _, inner = arg
            found = _first_group_problem(inner, required and low >= 1)
        elif op is _parser.BRANCH:
            found = next(
                (f for b in arg[1] if (f := _first_group_problem(b, False)) is not None), None
            )
        elif op in (_parser.ASSERT, _parser.ASSERT_NOT):
            found = _first_group_problem(arg[1], required and op is _parser.ASSERT)
        elif op is _parser.ATOMIC_GROUP:
            found = _first_group_problem(arg, required)
        elif op is _parser.GROUPREF_EXISTS:
            _, yes, no = arg
            branches = [yes] if no is None else [yes, no]
            found = next(
                (f for b in branches if (f := _first_group_problem(b, False)) is not None), None
            )
        else:
            continue
        if found is not None:
            return found
    return None


def dataset(config: dict) -> dict[str, Any]:
    return config["datasets"][config["dataset"]]


def sources_at(config: dict, dataset: str, root: str | os.PathLike) -> dict[str, dict]:
    """The `sources` of `dataset`, each source's folder taken by its name from under `root`
    instead of where config says (a generated data set, a copy in another place)."""
    sources = copy.deepcopy(config["datasets"][dataset]["sources"])
    for spec in sources.values():
        spec["root"] = str(Path(root) / Path(spec["root"]).name)
    return sources
