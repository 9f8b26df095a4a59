"""The model-randomisation sanity check of saliency maps (Adebayo et al., "Sanity checks for
saliency maps", NeurIPS 2018): a map that explains a model must change when the model's learned
weights are replaced by random ones. Here the head's weights are re-drawn from its layers'
initialisers (the base is what every run shares), each image is mapped again for the same
class, and the two maps are compared by Spearman's rank correlation (scipy). Maps that barely
change say more about the image than about what the model learned. Plain numpy and scipy; the
maps themselves come from cxr.attribution."""

from __future__ import annotations

import numpy as np
from scipy import stats

from cxr.saliency import sample_key

# At or above this median rank correlation, a method's maps count as barely changed. Adebayo
# et al. read their rank correlations (absolute values, as here) from 0 (unrelated) to 1
# (same ranking); half-way is where most of a map's ranking survives randomisation.
BARELY_CHANGED = 0.5


def sanity_sample(ids: list[str], k: int | None, seed: int) -> list[int]:
    """Positions in `ids` of the images mapped twice: the `k` with the smallest sample_key (the
    same rule as the external sample), in `ids`' order; None maps every image again."""
    if k is None or k >= len(ids):
        return list(range(len(ids)))
    order = sorted(range(len(ids)), key=lambda i: (sample_key(seed, ids[i]), ids[i]))
    return sorted(order[:k])


def rank_correlations(trained: np.ndarray, randomised: np.ndarray) -> np.ndarray:
    """Per image, |Spearman rho| between the two maps' pixels; NaN where either map is
    constant (nothing to rank)."""
    out = np.full(len(trained), np.nan)
    for k, (a, b) in enumerate(zip(trained, randomised, strict=True)):
        a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out[k] = abs(float(stats.spearmanr(a, b).statistic))
    return out


def summarise(rhos: np.ndarray) -> dict:
    """Median and quartiles of the per-image correlations, the share at or above
    BARELY_CHANGED, and the verdict."""
    finite = rhos[np.isfinite(rhos)]
    rule = (
        f"'maps barely change' if the median |rank correlation| between the maps of the trained "
        f"and of the randomised head is at least {BARELY_CHANGED}: such maps say more about the "
        "image than about the model; else 'maps depend on the model'"
    )
    if not len(finite):
        return {"images": 0, "constant": int(len(rhos)), "median": None, "quartiles": None,
                "share_barely_changed": None, "verdict": "not computed", "rule": rule}  # fmt: skip
    median = float(np.median(finite))
    return {
        "images": int(len(finite)),
        "constant": int(len(rhos) - len(finite)),
        "median": median,
        "quartiles": [float(v) for v in np.percentile(finite, [25, 75])],
        "share_barely_changed": float(np.mean(finite >= BARELY_CHANGED)),
        "verdict": "maps barely change" if median >= BARELY_CHANGED else "maps depend on the model",
        "rule": rule,
    }
