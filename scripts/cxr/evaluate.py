"""Evaluation of one trained model: predictions per image and the metrics JSON, on the held-out
test split and on each external set (an external source alone, or a named group of them), with
the metrics that the classes present define."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cxr import metrics

log = logging.getLogger(__name__)


def predict(model, arch, dataset, *, image_size: int, batch_size: int = 32) -> pd.DataFrame:
    """Run `model` over a shard dataset; one row per image with P(positive class)."""
    from cxr.models import preprocess

    rows, probabilities = [], []
    for batch in dataset.batch(batch_size):
        inputs = preprocess(arch, batch["image"], image_size)
        probabilities.append(np.asarray(model.predict_on_batch(inputs))[:, 1])
        for i in range(len(batch["label"])):
            rows.append(
                {
                    "id": batch["id"][i].numpy().decode(),
                    "patient": batch["patient"][i].numpy().decode(),
                    "source": batch["source"][i].numpy().decode(),
                    "label": int(batch["label"][i]),
                }
            )
    frame = pd.DataFrame(rows, columns=["id", "patient", "source", "label"])
    frame["probability"] = np.concatenate(probabilities).astype(float) if probabilities else []
    return frame


# Metrics that need both classes: on a one-class set they are left out, saying why.
BOTH_CLASS_METRICS = ("ppv", "npv", "f1", "roc_auc")


def evaluate_predictions(
    predictions: pd.DataFrame,
    *,
    threshold: float,
    n_boot: int,
    seed: int,
    external_sets: dict[str, list[str]] | None = None,
) -> dict:
    """Metrics on the test split, and on each external set (`external_sets`: name -> its
    sources; by default each external source in `predictions` alone)."""
    test = predictions[predictions["split"] == "test"]
    result = {
        "test": metrics.binary_metrics(
            test["label"].to_numpy(),
            test["probability"].to_numpy(),
            test["patient"].to_numpy(),
            threshold=threshold,
            n_boot=n_boot,
            seed=seed,
        ),
        "roc": metrics.roc_points(test["label"].to_numpy(), test["probability"].to_numpy()),
        "per_source": {},
        "external": {},
    }
    for source, part in test.groupby("source", sort=True):
        correct = int(((part["probability"] >= threshold).astype(int) == part["label"]).sum())
        result["per_source"][source] = {
            "accuracy": metrics.proportion(correct, len(part)),
            "patients": int(part["patient"].nunique()),
        }
    external = predictions[predictions["split"] == "external"]
    if external_sets is None:
        external_sets = {source: [source] for source in sorted(external["source"].unique())}
    for name, sources in external_sets.items():
        part = external[external["source"].isin(sources)]
        result["external"][name] = {
            # A source alone, or a named group of sources (whose images are also in the
            # entries of its sources: never add the two up).
            "kind": "source" if list(sources) == [name] else "set",
            **external_metrics(part, sources, threshold=threshold, n_boot=n_boot, seed=seed),
        }
    return result


def external_metrics(
    part: pd.DataFrame, sources: list[str], *, threshold: float, n_boot: int, seed: int
) -> dict:
    """One external set's metrics. Both classes: every test-split metric, with the same Wilson and
    patient-bootstrap intervals, and its ROC. One class: the rate of positive calls (the
    sensitivity of an all-disease set, the false-positive rate of an all-healthy one) and the
    metrics that one class defines. No images (curation excluded them all): the counts and a
    note, so that the report can say so."""
    y = part["label"].to_numpy(dtype=int)
    prob = part["probability"].to_numpy(dtype=float)
    n_positive, n_negative = int((y == 1).sum()), int((y == 0).sum())
    classes = {(True, True): "both", (True, False): "positive", (False, True): "negative"}
    entry = {
        "sources": list(sources),
        "n": len(part),
        "n_positive": n_positive,
        "n_negative": n_negative,
        "patients": int(part["patient"].nunique()),
        "classes": classes.get((n_positive > 0, n_negative > 0), "none"),
    }
    if not len(part):
        log.warning("external set %s has no images: curation excluded them all", sources)
        return entry | {
            "note": "no images: curation excluded every image of these sources (see the "
            "exclusion log for each reason)"
        }
    calls = int(np.count_nonzero(prob >= threshold))
    entry["positive_call_rate"] = metrics.proportion(calls, len(part)) | {"threshold": threshold}
    if n_negative:  # what the article's flaw predicts: healthy images called diseased
        entry["false_positive_rate"] = metrics.false_positive_rate(
            prob[y == 0], threshold=threshold
        )
    found = metrics.binary_metrics(
        y, prob, part["patient"].to_numpy(), threshold=threshold, n_boot=n_boot, seed=seed
    )
    if entry["classes"] != "both":
        missing = "healthy" if entry["classes"] == "positive" else "disease"
        absent = "specificity" if entry["classes"] == "positive" else "sensitivity"
        for key in (*BOTH_CLASS_METRICS, absent):
            found[key] = {"value": None, "ci95": None, "why": f"no {missing} images in this set"}
    else:
        entry["roc"] = metrics.roc_points(y, prob)
    entry["metrics"] = found
    return entry


def evaluate_model(
    model_path: Path,
    manifest: dict,
    shard_dir: Path,
    arch,
    *,
    image_size: int,
    threshold: float,
    n_boot: int,
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    """Load a saved full model and evaluate it on the test and external shards."""
    import keras

    from cxr.shards import read_shards, shard_paths

    model = keras.models.load_model(model_path, compile=False)
    parts = []
    for split in ("test", "external"):
        paths = shard_paths(manifest, shard_dir, split)
        if not paths:
            continue
        frame = predict(model, arch, read_shards(paths), image_size=image_size)
        frame.insert(0, "split", split)
        parts.append(frame)
        log.info("%s: predicted %d images", split, len(frame))
    predictions = pd.concat(parts, ignore_index=True).sort_values(["split", "id"])
    result = evaluate_predictions(predictions, threshold=threshold, n_boot=n_boot, seed=seed)
    return result, predictions.reset_index(drop=True)


def summarise(evaluations: list[dict]) -> dict:
    """Mean, SD, min and max over seeds of the headline metrics, per architecture (runs on the
    whole training split); a protocol with a learning curve adds `learning_curve`."""
    full = [ev for ev in evaluations if ev.get("train_fraction") in (None, 1.0)]
    summary = {arch: _summarise_runs(runs) for arch, runs in _by(full, "architecture").items()}
    curve = [ev for ev in evaluations if ev.get("train_fraction") is not None]
    if curve:
        summary["learning_curve"] = learning_curve(curve)
    return summary


def summary_table(summary: dict) -> pd.DataFrame:
    """summarise()'s per-architecture entries as one row each: the number of runs, the test
    size, and each metric's mean, SD, min and max over the runs (the learning curve left out)."""
    rows = []
    for arch, entry in summary.items():
        if arch == "learning_curve":
            continue
        row = {"architecture": arch, "runs": len(entry["seeds"]), "n_test": entry["n_test"]}
        for key, spread in entry.items():
            if isinstance(spread, dict):
                row.update({f"{key}_{stat}": spread[stat] for stat in ("mean", "sd", "min", "max")})
        rows.append(row)
    return pd.DataFrame(rows)


def _by(evaluations: list[dict], key: str) -> dict:
    groups: dict = {}
    for ev in evaluations:
        groups.setdefault(ev[key], []).append(ev)
    return dict(sorted(groups.items()))


def _summarise_runs(runs: list[dict]) -> dict:
    entry = {"seeds": [r["seed"] for r in runs], "n_test": runs[0]["test"]["n"]}
    for key in ("accuracy", "sensitivity", "specificity", "roc_auc", "f1"):
        values = [r["test"][key]["value"] for r in runs if r["test"][key]["value"] is not None]
        entry[key] = _spread(values)
    for name, first in runs[0].get("external", {}).items():
        if first["classes"] == "negative":  # named as before: the healthy external sources
            values = [r["external"][name]["false_positive_rate"]["value"] for r in runs]
            entry[f"external_fpr_{name}"] = _spread([v for v in values if v is not None])
        elif first["classes"] != "none":
            for key in ("sensitivity", "specificity", "roc_auc"):
                values = [r["external"][name]["metrics"][key]["value"] for r in runs]
                if any(v is not None for v in values):
                    entry[f"external_{key}_{name}"] = _spread([v for v in values if v is not None])
    return entry


def _width(metric: dict) -> float | None:
    ci = metric.get("ci95_patient_bootstrap") or metric.get("ci95")
    return None if not ci else ci[1] - ci[0]


def learning_curve(evaluations: list[dict]) -> list[dict]:
    """One row per architecture and training fraction: training patients, and per metric the
    mean and SD over repeats and the mean width of the 95% interval."""
    rows = []
    for arch, runs in _by(evaluations, "architecture").items():
        for fraction, group in _by(runs, "train_fraction").items():
            row = {
                "architecture": arch,
                "train_fraction": fraction,
                "repeats": len(group),
                "train_patients": _spread([r["training"]["n_train_patients"] for r in group])[
                    "mean"
                ],
                "train_images": _spread([r["training"]["n_train"] for r in group])["mean"],
            }
            for key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
                values = [r["test"][key]["value"] for r in group]
                widths = [_width(r["test"][key]) for r in group]
                row[key] = _spread([v for v in values if v is not None])
                row[f"{key}_ci_width"] = _spread([w for w in widths if w is not None])["mean"]
            rows.append(row)
    return rows


def _spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": len(arr),
    }


# The per-run files of evaluate_models, by output name (one list per name, in params["runs"]
# order), and the training facts each metrics file repeats.
# The figures of a run whose protocol the report shows (params["figures_of"]).
FIGURE_OUTPUTS = ("roc", "confusion", "curves")
TRAINING_FACTS = (
    "path",
    "n_train",
    "n_train_patients",
    "epochs_run",
    "best_epoch",
    "best_val_loss",
)


def evaluate_models_job(*, inputs: dict, outputs: dict, params: dict) -> list[dict]:
    """Evaluate every run of one architecture from the predictions train_models wrote: the
    metrics JSON and the ROC, confusion and training-curve figures of each run. No TensorFlow:
    the probabilities are already on disk."""
    from cxr import plots
    from cxr.io import read_json, read_table, write_json

    runs, evaluation, labels = params["runs"], params["evaluation"], params["labels"]
    # Figures for the runs of one protocol (the report's), in the order of `runs`.
    drawn = [i for i, plan in enumerate(runs) if plan["protocol"] == params["figures_of"]]
    for name, paths in [*((k, inputs[k]) for k in ("predictions", "history", "summary")),
                        ("metrics", outputs["metrics"])]:  # fmt: skip
        if len(paths) != len(runs):
            raise ValueError(f"{len(paths)} '{name}' files for {len(runs)} runs")
    for name in FIGURE_OUTPUTS:
        if len(outputs[name]) != len(drawn):
            raise ValueError(
                f"{len(outputs[name])} '{name}' figures for {len(drawn)} runs of "
                f"{params['figures_of']}"
            )
    figures = {i: {name: outputs[name][k] for name in FIGURE_OUTPUTS} for k, i in enumerate(drawn)}
    results = []
    for i, plan in enumerate(runs):
        run = plan["run"]
        predictions = read_table(inputs["predictions"][i])
        result = evaluate_predictions(
            predictions,
            threshold=evaluation["threshold"],
            n_boot=evaluation["bootstrap"],
            seed=run["seed"],
            external_sets=params.get("external"),
        )
        train_summary = read_json(inputs["summary"][i])
        result.update(
            {
                "architecture": params["architecture"],
                "protocol": plan["protocol"],
                "run": run["name"],
                "seed": run["seed"],
                "train_fraction": run.get("train_fraction"),
                "checkpoint": evaluation["checkpoint"],
                "weights": train_summary.get("weights"),
                "image_size": plan["training"]["image_size"],
                "prediction": train_summary.get("prediction"),
                # No timings or resume facts: this file must be byte-identical across reruns;
                # they stay in the training summary (provenance).
                "training": {k: train_summary.get(k) for k in TRAINING_FACTS},
            }
        )
        write_json(outputs["metrics"][i], result)
        test = result["test"]
        if i in figures:
            title = f"{params['architecture']}, {plan['protocol']}, {run['name']}"
            history = pd.read_csv(inputs["history"][i])
            plots.training_curves(history, title, figures[i]["curves"])
            plots.roc_curve(
                {"test": {**result["roc"], "auc": test["roc_auc"]["value"]}},
                title,
                figures[i]["roc"],
            )
            plots.confusion_matrix(
                test["confusion_matrix"],
                (labels["negative"], labels["positive"]),
                title,
                figures[i]["confusion"],
            )
        log.info(
            "%s %s: test accuracy %s on %d images",
            plan["protocol"],
            run["name"],
            test.get("accuracy", {}).get("value"),
            test.get("n"),
        )
        results.append(result)
    return results
