"""How the report writes numbers: fixed decimals, estimates with their 95% intervals,
percentages and differences in points. num, short, est and pct are also Jinja filters."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any


def num(value: Any, digits: int = 2) -> str:
    """A number with fixed decimals; 'n/a' for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def short(value: Any) -> str:
    """A feature value with 3 decimals below 10, 1 above (e.g. 0.993, 194.7)."""
    if value is None:
        return "n/a"
    return num(value, 3 if abs(value) < 10 else 1)


def est(value: Any, ci: Any = None, digits: int = 2) -> str:
    """Estimate with its interval, e.g. '0.80 (0.58-0.92)'."""
    text = num(value, digits)
    if text != "n/a" and ci and ci[0] is not None and ci[1] is not None:
        text += f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"
    return text


def pct(value: Any, digits: int = 0) -> str:
    """A share as a percentage, e.g. 0.25 -> '25%'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def pct_est(value: Any, ci: Any = None, digits: int = 0) -> str:
    """Share with its interval as percentages, e.g. '25% (10-49%)'."""
    text = pct(value, digits)
    if text != "n/a" and ci and ci[0] is not None and ci[1] is not None:
        text += f" ({100 * ci[0]:.{digits}f}-{100 * ci[1]:.{digits}f}%)"
    return text


def metric_text(metric: dict | None, digits: int = 2) -> str:
    """'value (lo-hi)' of a metrics dict {'value', 'ci95'}; 'n/a' when absent."""
    if not metric:
        return "n/a"
    return est(metric.get("value"), metric.get("ci95"), digits)


def width_points(ci: Any) -> float | None:
    """Width of an interval on [0, 1] in percentage points."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return 100.0 * (ci[1] - ci[0])


def points(difference: dict | None) -> str:
    """A difference of proportions in points with its interval, e.g. '+12 (+3 to +22)'."""
    if not difference or difference.get("value") is None:
        return "n/a"
    text = f"{100 * difference['value']:+.0f}"
    ci = difference.get("ci95")
    if ci:
        text += f" ({100 * ci[0]:+.0f} to {100 * ci[1]:+.0f})"
    return text


def detectable_difference(p: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest accuracy difference two independent test sets of n images detect (z-test)."""
    # The textbook normal approximation; scipy/statsmodels are not in the report environment.
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(2 * p * (1 - p) / n)
