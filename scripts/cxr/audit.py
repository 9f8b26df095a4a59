"""Leakage and shortcut audit: can the classes be told apart by things that carry no
pathology (patients shared across splits, duplicates, file properties, image borders)?"""

from __future__ import annotations

import logging
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxr import metrics
from cxr.images import load_image

log = logging.getLogger(__name__)

# 16x16 = 256-bit DCT hashes: 8x8 ones put unrelated synthetic (and some real) X-rays within a
# few bits of each other; at 256 bits the closest unrelated real pair measured 52 bits apart,
# a re-encoded crop 14.
PHASH_SIZE = 16

TRIVIAL_FEATURES = [
    "width", "height", "aspect", "megapixels", "is_jpeg", "is_png", "bit_depth", "is_rgb",
    "mean", "std", "p05", "p95", "border_mean", "border_std", "border_p95",
]  # fmt: skip


def patient_overlap(splits: pd.DataFrame) -> dict:
    """Patients that appear in more than one split (must be 0 for a patient-level split)."""
    trained = splits[splits["split"] != "external"]
    per_patient = trained.groupby("patient")["split"].nunique()
    shared = sorted(per_patient[per_patient > 1].index)
    return {"patients_in_several_splits": len(shared), "examples": shared[:10]}


def border_mask(height: int, width: int, fraction: float) -> np.ndarray:
    """True on the outer strip (`fraction` of each side), False on the central region."""
    mask = np.ones((height, width), dtype=bool)
    dy, dx = max(1, round(height * fraction)), max(1, round(width * fraction))
    mask[dy : height - dy, dx : width - dx] = False
    return mask


def image_features(
    images: pd.DataFrame, *, border_fraction: float, max_pixels: int
) -> tuple[pd.DataFrame, list[imagehash.ImageHash]]:
    """Trivial (non-pathology) features and a perceptual hash per curated image."""
    rows, hashes = [], []
    for i, row in enumerate(images.to_dict("records"), start=1):
        pixels, _ = load_image(Path(row["path"]), max_pixels=max_pixels)
        border = pixels[border_mask(*pixels.shape, border_fraction)]
        rows.append(
            {
                "id": row["id"],
                "width": row["width"],
                "height": row["height"],
                "aspect": row["width"] / row["height"],
                "megapixels": row["width"] * row["height"] / 1e6,
                "is_jpeg": float(str(row["format"]).upper() in ("JPEG", "MPO")),
                "is_png": float(str(row["format"]).upper() == "PNG"),
                "bit_depth": row["bit_depth"],
                "is_rgb": float(str(row["mode"]) in ("RGB", "RGBA", "CMYK", "P")),
                "mean": float(pixels.mean()),
                "std": float(pixels.std()),
                "p05": float(np.percentile(pixels, 5)),
                "p95": float(np.percentile(pixels, 95)),
                "border_mean": float(border.mean()),
                "border_std": float(border.std()),
                "border_p95": float(np.percentile(border, 95)),
            }
        )
        hashes.append(imagehash.phash(Image.fromarray(pixels), hash_size=PHASH_SIZE))
        if i % 200 == 0:
            log.info("features of %d/%d images", i, len(images))
    return pd.DataFrame(rows), hashes


def near_duplicates(
    ids: list[str], splits: list[str], hashes: list[imagehash.ImageHash], max_distance: int
) -> list[dict]:
    """Pairs of images in different splits whose perceptual hashes are close."""
    bits = np.array([h.hash.flatten() for h in hashes], dtype=bool)
    pairs = []
    for i in range(len(ids)):
        distance = (bits[i + 1 :] != bits[i]).sum(axis=1)
        for offset in np.flatnonzero(distance <= max_distance):
            j = i + 1 + int(offset)
            if splits[i] != splits[j]:
                pairs.append(
                    {
                        "a": ids[i],
                        "split_a": splits[i],
                        "b": ids[j],
                        "split_b": splits[j],
                        "hamming": int(distance[offset]),
                    }  # fmt: skip
                )
    return pairs


def grouped_cv_probabilities(
    features: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int, fit_predict
) -> np.ndarray:
    """Out-of-fold P(positive) with whole patients held out in each fold."""
    folds = min(folds, len(np.unique(groups)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    oof = np.full(len(y), np.nan)
    for train_idx, test_idx in splitter.split(features, y, groups):
        oof[test_idx] = fit_predict(features[train_idx], y[train_idx], features[test_idx])
    return oof


def logistic_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray):
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    model.fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1]


def probe_result(
    y: np.ndarray, prob: np.ndarray, groups: np.ndarray, *, n_boot: int, seed: int
) -> dict:
    auc = metrics.roc_auc(y, prob, groups, n_boot=n_boot, seed=seed)
    return {"auc": auc["value"], "ci95": auc["ci95"], "n": len(y),
            "patients": len(np.unique(groups))}  # fmt: skip


def trivial_feature_probe(
    features: pd.DataFrame, frame: pd.DataFrame, *, folds: int, seed: int, n_boot: int
) -> dict:
    """Patient-grouped CV AUC of a logistic regression on non-pathology features."""
    x = features[TRIVIAL_FEATURES].to_numpy(dtype=float)
    y = frame["y"].to_numpy()
    groups = frame["patient"].to_numpy()
    prob = grouped_cv_probabilities(x, y, groups, folds, seed, logistic_fit_predict)
    result = probe_result(y, prob, groups, n_boot=n_boot, seed=seed)
    full = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, y)
    coef = full[-1].coef_[0]
    order = np.argsort(-np.abs(coef))
    result["model"] = "StandardScaler + LogisticRegression, StratifiedGroupKFold by patient"
    result["features"] = TRIVIAL_FEATURES
    result["strongest_features"] = [
        {"feature": TRIVIAL_FEATURES[i], "coefficient": float(coef[i])} for i in order[:5]
    ]
    result["class_means"] = {
        str(label): {f: float(features.loc[part.index, f].mean()) for f in TRIVIAL_FEATURES}
        for label, part in frame.groupby("label", sort=True)
    }
    return result


def source_table(frame: pd.DataFrame) -> list[dict]:
    """Images and patients per label x source x split: shows when class equals source."""
    rows = []
    for (label, source, split), part in frame.groupby(["label", "source", "split"], sort=True):
        rows.append({"label": label, "source": source, "split": split, "images": len(part),
                     "patients": int(part["patient"].nunique())})  # fmt: skip
    return rows


def verdict_for_auc(probe: dict, *, flag: float, warn: float) -> dict:
    """'flag' when the AUC is >= flag and its lower bound is above chance; 'warn' when >= warn."""
    auc, ci = probe.get("auc"), probe.get("ci95")
    rule = (
        f"flag if AUC >= {flag} and the 95% interval's lower bound > 0.5; "
        f"warn if AUC >= {warn}; else pass"
    )
    if auc is None:
        return {"verdict": "not computed", "rule": rule}
    if auc >= flag and ci and ci[0] > 0.5:
        level = "flag"
    elif auc >= warn:
        level = "warn"
    else:
        level = "pass"
    return {"verdict": level, "rule": rule}


def verdicts(audit: dict, *, flag: float, warn: float) -> list[dict]:
    """One plain-language verdict per check, with the rule that produced it."""
    out = []
    overlap = audit["patient_overlap"]["patients_in_several_splits"]
    counter = audit["image_level_counterfactual"]
    out.append({
        "check": "patient overlap between splits",
        "verdict": "pass" if overlap == 0 else "flag",
        "rule": "flag if any patient is in two splits",
        "text": (
            f"{overlap} patients appear in more than one split. The article's image-level split "
            f"would have put {counter['patients_in_train_and_test']} of "
            f"{counter['patients_total']} patients in both train and test "
            f"({counter['test_images_whose_patient_is_in_train']} of {counter['test_images']} "
            "test images from a patient also seen in training)."
        ),
    })  # fmt: skip
    dupes = audit["near_duplicates"]
    out.append({
        "check": "near-duplicate images across splits",
        "verdict": "pass" if not dupes["pairs"] else "warn",
        "rule": f"warn if any cross-split pair has perceptual-hash distance <= "
                f"{dupes['max_distance']} bits ({dupes['hash']})",
        "text": (
            f"{len(dupes['pairs'])} cross-split pairs of near-identical images; "
            f"{dupes['exact_duplicates_removed']} exact duplicates were removed during curation."
        ),
    })  # fmt: skip
    for key, name, what in (
        ("trivial_feature_probe", "trivial-feature probe",
         "file size, format, bit depth and intensity statistics"),
        ("border_probe", "border-only probe", "image borders with the lungs blanked out"),
    ):  # fmt: skip
        probe = audit.get(key)
        if not probe:
            continue
        v = verdict_for_auc(probe, flag=flag, warn=warn)
        ci = probe.get("ci95") or [None, None]
        auc_text = "n/a" if probe.get("auc") is None else f"{probe['auc']:.2f}"
        ci_text = "" if ci[0] is None else f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})"
        meaning = {
            "flag": "the classes can be told apart without looking at the lungs: a model may "
                    "have learned the source, not the disease",
            "warn": "some separation without the lungs; treat headline metrics with caution",
            "pass": "no clear separation without the lungs",
            "not computed": "not enough data to compute",
        }[v["verdict"]]  # fmt: skip
        out.append(
            {"check": name, **v, "text": f"AUC {auc_text}{ci_text} from {what} alone: {meaning}."}
        )
    labels_by_source = audit["label_source"]
    sources_per_label: dict[str, set] = {}
    for row in labels_by_source:
        sources_per_label.setdefault(row["label"], set()).add(row["source"])
    confounded = all(len(s) == 1 for s in sources_per_label.values()) and len(
        set.union(*sources_per_label.values())
    ) == len(sources_per_label)
    listing = "; ".join(
        f"{k}: {', '.join(sorted(v))}" for k, v in sorted(sources_per_label.items())
    )
    out.append(
        {
            "check": "label vs source",
            "verdict": "flag" if confounded else "pass",
            "rule": "flag if every label comes from its own single source",
            "text": (
                f"Each class comes from a different source ({listing}), so class and source "
                "are confounded: any difference between sources is a shortcut."
                if confounded
                else f"At least one label has several sources ({listing})."
            ),
        }
    )
    return out


def audit_leakage(
    images: pd.DataFrame,
    exclusions: pd.DataFrame,
    splits: pd.DataFrame,
    split_summary: dict,
    border_probe: dict | None,
    *,
    settings: dict,
    seed: int,
    n_boot: int,
    max_pixels: int,
) -> tuple[dict, pd.DataFrame]:
    """All checks on the training pool (train/val/test; external sources are left out)."""
    frame = images.merge(splits[["id", "split"]], on="id", validate="one_to_one")
    frame = frame[frame["split"] != "external"].sort_values("id").reset_index(drop=True)
    log.info("auditing %d images of %d patients", len(frame), frame["patient"].nunique())
    features, hashes = image_features(
        frame, border_fraction=settings["border_fraction"], max_pixels=max_pixels
    )
    max_distance = settings["near_duplicate_bits"]
    pairs = near_duplicates(frame["id"].tolist(), frame["split"].tolist(), hashes, max_distance)
    audit = {
        "patient_overlap": patient_overlap(splits),
        # Only a patient-disjoint primary protocol has it (an image-level one IS that split).
        "image_level_counterfactual": split_summary.get("image_level_counterfactual") or {},
        "near_duplicates": {
            "hash": f"imagehash.phash, {PHASH_SIZE * PHASH_SIZE} bits",
            "max_distance": max_distance,
            "pairs": pairs,
            "exact_duplicates_removed": int((exclusions["reason"] == "duplicate image").sum()),
        },
        "trivial_feature_probe": trivial_feature_probe(
            features, frame, folds=settings["cv_folds"], seed=seed, n_boot=n_boot
        ),
        "border_probe": border_probe,
        "label_source": source_table(frame),
        "thresholds": {"auc_flag": settings["auc_flag"], "auc_warn": settings["auc_warn"]},
    }
    audit["verdicts"] = verdicts(audit, flag=settings["auc_flag"], warn=settings["auc_warn"])
    features.insert(1, "label", frame["label"])
    features.insert(2, "source", frame["source"])
    features.insert(3, "split", frame["split"])
    return audit, features
