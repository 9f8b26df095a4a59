"""Splits of the curated images for a protocol: patient-disjoint and label-stratified
(scikit-learn's StratifiedGroupKFold), or image-level as the article did (stratified by label
only, so one patient's images can land in train and test); the removal of marked images; and the
nested subsets of training patients of a learning curve."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from cxr.errors import DataError
from cxr.fractions import check_fractions, fold_count
from cxr.marks import COLOURED, mark_reasons


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


def split_images(images: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """The article's split: training-role images shuffled into train/val/test, stratified by
    label, with no patient grouping; test and val hold round(fraction x images) images."""
    frame = images.sort_values("id").reset_index(drop=True)
    split = pd.Series("train", index=frame.index, dtype=object)
    split[frame["role"] == "external"] = "external"
    pool = frame[split == "train"]
    n_test = round(fractions["test"] * len(pool))
    n_val = round(fractions["val"] * len(pool))
    if min(n_test, n_val, len(pool) - n_test - n_val) < 2:
        raise DataError(
            f"{len(pool)} images are too few for an image-level split {fractions}: each part "
            "needs at least 2 images"
        )
    rest, test = train_test_split(pool, test_size=n_test, random_state=seed, stratify=pool["y"])
    _, val = train_test_split(rest, test_size=n_val, random_state=seed + 1, stratify=rest["y"])
    split[test.index] = "test"
    split[val.index] = "val"
    out = frame[["id", "patient", "source", "label", "y"]].copy()
    out["split"] = split
    return out


def remove_marked(
    images: pd.DataFrame, *, min_area: float, ids: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off the images that carry annotation marks (cxr.marks.mark_reasons: a coloured
    region of at least `min_area` of the image, measured at curation, or an id in the hand
    list `ids`). Returns (kept, removed) with removed's `reason` and `detail` saying why."""
    reasons = mark_reasons(images, min_area=min_area, ids=ids)
    marked = reasons != ""
    removed = images[marked].copy()
    removed["reason"] = reasons[marked]
    removed["detail"] = [
        f"largest coloured region {area:.3%} of the image (min_area {min_area:g}), box {box}"
        if reason == COLOURED
        else "marks that are not coloured, listed by hand"
        for area, box, reason in zip(
            removed["mark_area"].astype(float), removed["mark_box"], removed["reason"], strict=True
        )
    ]
    columns = ["id", "patient", "source", "label", "role", "reason", "detail"]
    return images[~marked], removed[columns].reset_index(drop=True)


def subsample_patients(splits: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """The training rows of a learning-curve run: `fraction` of the training patients of each
    label (at least one), drawn from one seeded order of patients, so that with the same seed a
    smaller fraction's patients are a subset of a larger one's. Val and test are untouched."""
    train = splits[splits["split"] == "train"]
    rng = np.random.default_rng([seed, 7])
    chosen: list[str] = []
    for _, part in train.groupby("y", sort=True):
        patients = np.array(sorted(part["patient"].unique()))
        order = rng.permutation(len(patients))
        take = max(1, int(np.ceil(fraction * len(patients) - 1e-9)))
        chosen.extend(patients[order[:take]])
    return train[train["patient"].isin(set(chosen))]


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


SPLIT_METHOD = {
    "patient": "sklearn StratifiedGroupKFold: test fold, then val fold of the rest",
    "image": "sklearn train_test_split on images, stratified by label, no patient grouping "
    "(the article's way): test, then val of the rest",
}


def split_protocol(
    images: pd.DataFrame, settings: dict, marks: dict | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """A protocol's split table, its removed images (with reasons) and its summary.

    `settings`: method (patient | image), fractions, seed, protocol; `marks`: {min_area, ids}
    when the protocol drops marked images, else None. Every curated image is either in the
    split table or in the removed table."""
    log = logging.getLogger(__name__)
    kept, removed = (
        images,
        pd.DataFrame(columns=["id", "patient", "source", "label", "role", "reason", "detail"]),
    )
    if marks is not None:
        kept, removed = remove_marked(images, min_area=marks["min_area"], ids=marks["ids"])
        log.info("%s: removed %d marked images of %d", settings["protocol"], len(removed),
                 len(images))  # fmt: skip
    if settings["method"] == "patient":
        splits = split_patients(kept, settings["fractions"], settings["seed"])
    else:
        splits = split_images(kept, settings["fractions"], settings["seed"])
    if len(splits) + len(removed) != len(images):  # an accounting bug must never pass silently
        raise AssertionError(f"{len(splits)} + {len(removed)} != {len(images)} images")
    overlap = splits[splits["split"] != "external"].groupby("patient")["split"].nunique()
    test = splits[splits["split"] == "test"]
    train_patients = set(splits.loc[splits["split"] == "train", "patient"])
    summary = {
        "protocol": settings["protocol"],
        "fractions": settings["fractions"],
        "seed": settings["seed"],
        "method": SPLIT_METHOD[settings["method"]],
        "counts": summarise(splits),
        "removed": {
            "count": len(removed),
            "by_reason": {str(k): int(v) for k, v in removed["reason"].value_counts().items()},
            "by_label_source": [
                {"label": str(label), "source": str(source), "count": int(len(part))}
                for (label, source), part in removed.groupby(["label", "source"], sort=True)
            ],
        },
        "patients_in_several_splits": int((overlap > 1).sum()),
        "test_images_whose_patient_is_in_train": int(test["patient"].isin(train_patients).sum()),
    }
    if settings["method"] == "patient":
        summary["image_level_counterfactual"] = image_level_counterfactual(
            kept, settings["fractions"]["test"], settings["seed"]
        )
    return splits, removed, summary


def repeated_splits(
    images: pd.DataFrame, settings: dict, marks: dict | None, seeds: list[int]
) -> tuple[pd.DataFrame, dict]:
    """A protocol's split once per seed of `seeds` (its repeats), stacked with the columns
    `repeat` (0, 1, ...) and `split_seed`, and per repeat its counts and leakage. Repeat k is
    split_protocol with seed seeds[k]: the same rule, the same images, another draw."""
    tables, repeats = [], []
    for number, seed in enumerate(seeds):
        splits, _, summary = split_protocol(images, {**settings, "seed": seed}, marks)
        splits = splits.copy()
        splits.insert(0, "split_seed", seed)
        splits.insert(0, "repeat", number)
        tables.append(splits)
        repeats.append(
            {
                "repeat": number,
                "split_seed": seed,
                "counts": summary["counts"],
                "patients_in_several_splits": summary["patients_in_several_splits"],
                "test_images_whose_patient_is_in_train": summary[
                    "test_images_whose_patient_is_in_train"
                ],
            }
        )
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return table, {"protocol": settings["protocol"], "method": settings["method"],
                   "repeats": repeats}  # fmt: skip
