"""Protocols: named sets of settings (split, selection, seeds, head training) that run side by
side on the same curated images and the same base features, each under results/<protocol>/.

A protocol's runs are its training seeds, times its training fractions when it has a learning
curve. Run names are part of file paths: `seed<k>`, or `f<percent>-seed<k>` (e.g. `f025-seed1`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cxr.errors import ConfigError
from cxr.fractions import check_fractions

SPLIT_METHODS = ("patient", "image")
# Head settings a protocol may change: the base and its features stay shared by all protocols.
HEAD_SETTINGS = ("epochs", "batch_size", "learning_rate", "dense_units", "dropout", "pool_size")
# Names already used directly under results/, which a protocol's folder would collide with.
RESERVED = ("curated", "shards", "features", "benchmarks", "protocols", "audit", "run", "primary")
NAME = re.compile(r"[A-Za-z0-9_]+")
RUN_NAME = r"(f\d{3}-)?seed\d+"


@dataclass(frozen=True)
class Run:
    """One training run of a protocol: a seed and, on a learning curve, a training fraction."""

    name: str
    seed: int
    train_fraction: float | None = None


def run_name(seed: int, train_fraction: float | None = None) -> str:
    if train_fraction is None:
        return f"seed{seed}"
    return f"f{round(train_fraction * 100):03d}-seed{seed}"


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """A protocol of config's `protocols` (from_config); its defaults are the schema's
    (rules/config.schema.yaml), so every field is given."""

    name: str
    description: str
    split: str
    fractions: dict[str, float]
    split_seed: int
    seeds: tuple[int, ...]
    exclude_marks: bool
    train_fractions: tuple[float, ...] | None  # None: no learning curve
    training: dict[str, Any]
    repeats: int

    @classmethod
    def from_config(cls, name: str, config: dict) -> Protocol:
        """The protocol `name` of the validated `config` (schema defaults filled in), its null
        fractions, split_seed and seeds taken from the top-level settings."""
        spec = config["protocols"].get(name)
        where = f"protocols.{name}"
        if not isinstance(spec, dict):
            defined = sorted(k for k in config["protocols"] if k not in ("run", "primary"))
            raise ConfigError(f"{where} is not defined; defined protocols: {defined}")
        if not NAME.fullmatch(name) or name in RESERVED:
            raise ConfigError(
                f"{where}: a protocol name must be letters, digits or _ and none of {RESERVED} "
                "(it becomes the folder results/<name>/)"
            )
        split = spec["split"]
        if split not in SPLIT_METHODS:
            raise ConfigError(f"{where}.split must be one of {SPLIT_METHODS}, got {split!r}")
        fractions = dict(spec["fractions"] or config["splits"])
        if split == "patient":
            try:
                check_fractions(fractions)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        elif any(v <= 0 for v in fractions.values()) or abs(sum(fractions.values()) - 1) > 1e-6:
            raise ConfigError(f"{where}.fractions {fractions} must each be > 0 and sum to 1")
        seeds = tuple(int(s) for s in (spec["seeds"] or config["training"]["seeds"]))
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}.seeds lists a seed twice: {list(seeds)}")
        train_fractions = spec["train_fractions"]
        if train_fractions is not None:
            train_fractions = tuple(float(f) for f in train_fractions)
            for value in train_fractions:
                # The fraction becomes part of the run's file name, as a whole percentage.
                if not 0 < value <= 1 or abs(round(value * 100) - value * 100) > 1e-9:
                    raise ConfigError(
                        f"{where}.train_fractions: {value} must be a whole percentage in (0, 1], "
                        "e.g. 0.25"
                    )
            if len(set(train_fractions)) != len(train_fractions):
                raise ConfigError(f"{where}.train_fractions lists a value twice")
        training = dict(spec["training"])
        unknown = sorted(set(training) - set(HEAD_SETTINGS))
        if unknown:
            raise ConfigError(
                f"{where}.training: {unknown} cannot differ between protocols (the base and its "
                f"features are shared); a protocol may set {list(HEAD_SETTINGS)}"
            )
        repeats = int(spec["repeats"])
        if repeats < 0:
            raise ConfigError(f"{where}.repeats must be >= 0, got {repeats}")
        if repeats and train_fractions is not None:
            raise ConfigError(
                f"{where}: repeats and train_fractions do not combine (a learning curve already "
                "fits one head per fraction and seed); set repeats on a protocol without "
                "train_fractions"
            )
        split_seed = spec["split_seed"]
        return cls(
            name=name,
            description=str(spec["description"]),
            split=split,
            fractions=fractions,
            split_seed=int(config["seed"] if split_seed is None else split_seed),
            seeds=seeds,
            exclude_marks=bool(spec["exclude_marks"]),
            train_fractions=train_fractions,
            training=training,
            repeats=repeats,
        )

    def runs(self) -> list[Run]:
        if self.train_fractions is None:
            return [Run(run_name(seed), seed) for seed in self.seeds]
        return [
            Run(run_name(seed, fraction), seed, fraction)
            for fraction in self.train_fractions
            for seed in self.seeds
        ]

    def run(self, name: str) -> Run:
        for run in self.runs():
            if run.name == name:
                return run
        raise ConfigError(f"protocol {self.name} has no run {name!r}")

    def repeat_seeds(self) -> list[int]:
        """The split seeds of the repeated splits: repeat k uses split_seed + k, so repeat 0 is
        the protocol's own split and two protocols with one split_seed pair up by k."""
        return [self.split_seed + k for k in range(self.repeats)]

    @property
    def repeat_run(self) -> Run:
        """The training seed every repeat's head uses: the protocol's first."""
        return Run(run_name(self.seeds[0]), self.seeds[0])

    def split_settings(self) -> dict[str, Any]:
        """What the protocol's split rule uses (only that: nothing else may rerun it)."""
        return {
            "protocol": self.name,
            "method": self.split,
            "fractions": self.fractions,
            "seed": self.split_seed,
            "exclude_marks": self.exclude_marks,
        }


def protocols_to_run(config: dict) -> dict[str, Protocol]:
    """The protocols listed in `protocols.run` of the validated `config`, checked, in order."""
    names = list(config["protocols"]["run"])
    if not names:
        raise ConfigError("protocols.run is empty: name at least one protocol to run")
    if len(set(names)) != len(names):
        raise ConfigError(f"protocols.run lists a protocol twice: {names}")
    chosen = {name: Protocol.from_config(name, config) for name in names}
    primary = config["protocols"]["primary"]
    if primary not in chosen:
        raise ConfigError(
            f"protocols.primary {primary!r} is not in protocols.run {names}: the report's main "
            "sections need the primary protocol's results"
        )
    return chosen
