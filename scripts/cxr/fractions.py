"""Split fractions: how many patient folds make a fraction, and whether the configured fractions
can be made at all. Plain Python, because the config check runs them when Snakemake builds the
DAG, before any job (cxr.split, which splits, needs pandas and scikit-learn)."""

from __future__ import annotations

from cxr.errors import ConfigError


def fold_count(fraction: float) -> int:
    """Folds of StratifiedGroupKFold whose one fold holds about `fraction` of the patients."""
    return max(2, round(1.0 / fraction))


def check_fractions(fractions: dict[str, float]) -> None:
    """Fractions are positive, sum to 1, and can be made as one fold of k (within 5 points)."""
    total = sum(fractions.values())
    if any(v <= 0 for v in fractions.values()) or abs(total - 1.0) > 1e-6:
        raise ConfigError(
            f"splits fractions {fractions} must each be > 0 and sum to 1 (they sum to {total:g})"
        )
    made = {"test": fractions["test"], "val": fractions["val"] / (1.0 - fractions["test"])}
    for name, fraction in made.items():
        k = fold_count(fraction)
        if abs(1.0 / k - fraction) > 0.05:
            raise ConfigError(
                f"splits.{name} = {fractions[name]:g} cannot be made as one of k patient folds "
                f"(nearest: 1/{k} = {1 / k:.0%} of the patients left for it); choose a value "
                "nearer 1/k, e.g. 0.1, 0.2, 0.25 or 0.5"
            )
