"""Patient-disjoint, label-stratified splits (scikit-learn's StratifiedGroupKFold), and the
image-level split the article used, kept only to count the patients it would have leaked."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from cxr.errors import ConfigError, DataError


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


def _take_fold(frame: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of one fold of about `fraction` of the patients, stratified by label."""
    n_splits = fold_count(fraction)
    n_patients = frame["patient"].nunique()
    if n_patients < n_splits:
        raise DataError(
            f"only {n_patients} patients for a split of {fraction:.0%}: need at least {n_splits}"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, fold = next(splitter.split(frame, frame["y"], groups=frame["patient"]))
    mask = np.zeros(len(frame), dtype=bool)
    mask[fold] = True
    return mask


def split_patients(images: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """Assign each training-role image to train/val/test, whole patients at a time.

    Images of role 'external' get split 'external' (evaluated only, never trained on)."""
    check_fractions(fractions)
    frame = images.sort_values("id").reset_index(drop=True)
    split = pd.Series("train", index=frame.index, dtype=object)
    split[frame["role"] == "external"] = "external"
    pool = frame[split == "train"]
    test_mask = _take_fold(pool, fractions["test"], seed)
    split[pool.index[test_mask]] = "test"
    rest = pool[~test_mask]
    val_mask = _take_fold(rest, fractions["val"] / (1.0 - fractions["test"]), seed + 1)
    split[rest.index[val_mask]] = "val"
    out = frame[["id", "patient", "source", "label", "y"]].copy()
    out["split"] = split
    assert_patient_disjoint(out)
    return out


def assert_patient_disjoint(splits: pd.DataFrame) -> None:
    per_patient = splits.groupby("patient")["split"].nunique()
    shared = per_patient[per_patient > 1]
    if len(shared):
        raise AssertionError(f"patients in several splits: {list(shared.index[:5])}")


def image_level_counterfactual(images: pd.DataFrame, test_fraction: float, seed: int) -> dict:
    """What the article's image-level random split would have leaked on the same data."""
    pool = images[images["role"] != "external"].sort_values("id").reset_index(drop=True)
    train, test = train_test_split(
        pool, test_size=test_fraction, random_state=seed, stratify=pool["y"]
    )
    shared = sorted(set(train["patient"]) & set(test["patient"]))
    test_leaked = int(test["patient"].isin(shared).sum())
    return {
        "method": "sklearn train_test_split on images, stratified by label (the article's way)",
        "test_fraction": test_fraction,
        "seed": seed,
        "patients_in_train_and_test": len(shared),
        "patients_total": int(pool["patient"].nunique()),
        "test_images": len(test),
        "test_images_whose_patient_is_in_train": test_leaked,
        "example_patients": shared[:10],
    }


def summarise(splits: pd.DataFrame) -> dict:
    """Counts of images and patients per split and label (for the report)."""
    table = {}
    for name, part in splits.groupby("split", sort=True):
        table[name] = {
            "images": len(part),
            "patients": int(part["patient"].nunique()),
            "by_label": {
                str(label): {"images": len(g), "patients": int(g["patient"].nunique())}
                for label, g in part.groupby("label", sort=True)
            },
        }
    return table
