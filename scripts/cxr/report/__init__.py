"""The self-contained HTML report: reads the workflow's outputs, derives the numbers the caveats
need, and renders the Jinja2 templates in report/ with every image embedded as a data: URI."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml

from cxr.errors import DataError
from cxr.images import ImageRejected
from cxr.io import atomic_open, read_json, sha256_file
from cxr.report.figures import curation_flow_uri, png_file_uri, thumbnail_uri
from cxr.report.formatting import (
    detectable_difference,
    est,
    metric_text,
    num,
    pct,
    pct_est,
    short,
    width_points,
)

log = logging.getLogger(__name__)

PACKAGES = (
    "snakemake", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "pillow", "jinja2",
)  # fmt: skip
HEADLINE = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("roc_auc", "ROC AUC"),
)
SPLIT_ORDER = ("train", "val", "test", "external")
# Names the workflow gives its per-run outputs: results/eval/<arch>/seed<k>.json and
# results/models/<arch>/seed<k>/history.csv.
RUN_PATTERN = re.compile(r"(?P<arch>[^/]+)/seed(?P<seed>\d+)(?:/|\.)")
DEFAULT_DATASET = "synthetic"  # the embedded default, used when config.yaml cannot be read


# ---------------------------------------------------------------- images


def sample_images(
    images: pd.DataFrame,
    *,
    positive: str,
    per_group: int = 4,
    size: int = 96,
    image_root: Path,
    max_pixels: int,
) -> list[dict]:
    """Up to `per_group` thumbnails per class and source, each from a different patient."""
    groups = []
    frame = images.sort_values("id")
    for (label, source), part in frame.groupby(["label", "source"], sort=True):
        picks = part.drop_duplicates("patient").head(per_group)
        thumbs = []
        for row in picks.to_dict("records"):
            path = Path(row["path"])
            if not path.is_absolute():
                path = image_root / path
            try:
                uri, problem = thumbnail_uri(path, size=size, max_pixels=max_pixels), ""
            except ImageRejected as error:
                log.warning("sample image %s: %s", path, error)
                uri, problem = None, error.reason
            thumbs.append(
                {"uri": uri, "id": row["id"], "patient": row["patient"], "problem": problem}
            )
        groups.append(
            {"label": label, "source": source, "role": part["role"].iloc[0], "thumbs": thumbs}
        )
    groups.sort(key=lambda g: (g["label"] != positive, g["role"] != "train", g["source"]))
    return groups


# ---------------------------------------------------------------- provenance


def package_versions(names: tuple[str, ...] = PACKAGES) -> list[dict]:
    versions = []
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        versions.append({"name": name, "version": version})
    return versions


def git_commit(repo_dir: Path | None) -> str:
    """HEAD of the workflow's checkout, '+ uncommitted changes' when dirty; 'unknown' if none."""
    if repo_dir is None:
        return "unknown"

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(repo_dir), *args],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as error:
        log.info("no git commit for %s: %s", repo_dir, error)
        return "unknown"
    return f"{commit} + uncommitted changes" if dirty else commit


def default_dataset(repo_dir: Path | None) -> str:
    """The `dataset` of the workflow's own config.yaml (what `snakemake` alone runs)."""
    try:
        return yaml.safe_load((repo_dir / "config.yaml").read_text())["dataset"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return DEFAULT_DATASET


def commands(dataset: str, default: str) -> dict:
    everything = "snakemake --cores 4"
    if dataset != default:
        everything += f" --config dataset={dataset}"
    return {"all": everything, "report": "snakemake --cores 1 --forcerun render_report"}


def plain(value: Any) -> Any:
    """Snakemake's config/params as plain dicts and lists (for yaml.safe_dump)."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------- data section


def run_key(path: str | Path) -> tuple[str, int]:
    """(architecture, seed) from a per-run output path."""
    match = RUN_PATTERN.search(Path(path).as_posix())
    if not match:
        raise DataError(f"{path}: expected a path like .../<arch>/seed<k>.json or /seed<k>/")
    return match["arch"], int(match["seed"])


def source_rows(sources: dict) -> list[dict]:
    rows = []
    for name, spec in sources.items():
        download = spec.get("download") or {}
        rows.append(
            {
                "name": name,
                "label": spec.get("label", ""),
                "role": spec.get("role", "train"),
                "kind": spec.get("kind", ""),
                "version": spec.get("version", "not stated"),
                "license": spec.get("license", "not stated"),
                "root": spec.get("root", ""),
                "origin": download.get("git") or download.get("url") or "",
                "sample": spec.get("sample"),
            }
        )
    return rows


def flow_table(flow: dict) -> dict:
    """Steps x sources: images remaining after each step and what the step removed."""
    names = list(flow["sources"])
    steps = []
    for name in names:
        for step in flow["sources"][name]["steps"]:
            if step["step"] not in steps:
                steps.append(step["step"])
    rows = []
    for step in steps:
        cells = []
        for name in names:
            found = [s for s in flow["sources"][name]["steps"] if s["step"] == step]
            if not found:
                cells.append({"remaining": None, "removed": ""})
                continue
            removed = found[0]["removed"]
            text = ", ".join(f"{reason} {count}" for reason, count in sorted(removed.items()))
            cells.append({"remaining": found[0]["remaining"], "removed": text})
        rows.append({"step": step, "cells": cells})
    totals = [{k: flow["sources"][n][k] for k in ("total", "included", "excluded")} for n in names]
    return {"sources": names, "rows": rows, "totals": totals}


def exclusion_table(exclusions: pd.DataFrame) -> dict:
    """Excluded images per reason and source."""
    if exclusions.empty:
        return {"sources": [], "rows": []}
    counts = exclusions.groupby(["reason", "source"]).size().unstack(fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    sources = [str(c) for c in counts.columns]
    rows = [
        {"reason": reason, "counts": [int(v) for v in row], "total": int(row.sum())}
        for reason, row in counts.iterrows()
    ]
    return {"sources": sources, "rows": rows, "total": int(counts.to_numpy().sum())}


def composition(splits: pd.DataFrame, positive: str) -> dict:
    """Images and patients per class x source x split."""
    present = [s for s in SPLIT_ORDER if s in set(splits["split"])]
    present += sorted(set(splits["split"]) - set(present))
    rows = []
    for (label, source), part in splits.groupby(["label", "source"], sort=True):
        cells = []
        for split in present:
            sub = part[part["split"] == split]
            cells.append({"images": len(sub), "patients": int(sub["patient"].nunique())})
        rows.append({"label": label, "source": source, "cells": cells})
    rows.sort(key=lambda r: (r["label"] != positive, r["source"]))
    totals = []
    for split in present:
        sub = splits[splits["split"] == split]
        totals.append({"images": len(sub), "patients": int(sub["patient"].nunique())})
    return {"splits": present, "rows": rows, "totals": totals}


def class_counts(splits: pd.DataFrame, positive: str) -> list[dict]:
    """What the models learnt from: images, patients and sources per class (train/val/test)."""
    pool = splits[splits["split"] != "external"]
    rows = [
        {
            "label": label,
            "positive": label == positive,
            "images": len(part),
            "patients": int(part["patient"].nunique()),
            "sources": sorted(part["source"].unique()),
        }
        for label, part in pool.groupby("label", sort=True)
    ]
    return sorted(rows, key=lambda r: not r["positive"])


def licence_table(images: pd.DataFrame) -> list[dict]:
    """Included images per source and licence as written in the source's metadata."""
    frame = images.assign(license=images["license"].replace("", "(none given)"))
    counts = frame.groupby(["source", "license"]).size()
    return [
        {"source": source, "license": licence, "images": int(n)}
        for (source, licence), n in counts.items()
    ]


def metadata_rows(images: pd.DataFrame) -> list[dict]:
    """Included images that carry source metadata (clinical notes, licence or URL)."""
    columns = ["id", "patient", "view", "finding", "license", "url", "notes"]
    has_meta = (images["notes"] != "") | (images["license"] != "") | (images["url"] != "")
    return images.loc[has_meta, columns].sort_values("id").to_dict("records")


# ---------------------------------------------------------------- runs and results


def history_facts(history: pd.DataFrame) -> dict:
    """Epochs, last-epoch accuracies and the epoch of lowest validation loss."""
    if history.empty:
        return {"epochs": 0}
    last = history.iloc[-1]
    facts = {"epochs": len(history)}
    for column in ("loss", "accuracy", "val_loss", "val_accuracy"):
        facts[f"final_{column}"] = float(last[column]) if column in history else None
    if "val_loss" in history:
        best = history.loc[history["val_loss"].idxmin()]
        facts["lowest_val_loss_epoch"] = int(best["epoch"])
    return facts


def misclassified(predictions: pd.DataFrame, threshold: float, limit: int = 5) -> dict:
    """Test images on the wrong side of the threshold, most confident first."""
    test = predictions[predictions["split"] == "test"]
    wrong = test[(test["probability"] >= threshold).astype(int) != test["label"]]
    wrong = wrong.assign(margin=(wrong["probability"] - threshold).abs())
    wrong = wrong.sort_values(["margin", "id"], ascending=[False, True])
    rows = wrong[["id", "patient", "source", "label", "probability"]].head(limit)
    return {"count": len(wrong), "n": len(test), "rows": rows.to_dict("records")}


TIMING_KEYS = ("seconds_features", "seconds_fit", "resumed_from_epoch")


def load_runs(inputs: dict) -> list[dict]:
    """One record per (architecture, seed): evaluation JSON, history, predictions, figures."""
    histories = {run_key(p): p for p in inputs.get("histories", [])}
    # Timings live in the training summaries (provenance), not in the byte-stable eval JSONs.
    timings = {
        run_key(p): {k: read_json(p).get(k) for k in TIMING_KEYS}
        for p in inputs.get("train_summaries", [])
    }
    predictions = {run_key(p): p for p in inputs.get("predictions", [])}
    runs = []
    for path in inputs["evaluations"]:
        path = Path(path)
        ev = read_json(path)
        key = (ev["architecture"], int(ev["seed"]))
        stem = path.name.removesuffix(".json")
        history = pd.read_csv(histories[key]) if key in histories else pd.DataFrame()
        threshold = ev["test"]["threshold"]
        errors = None
        if key in predictions:
            frame = pd.read_csv(predictions[key], dtype={"patient": str}, keep_default_na=False)
            errors = misclassified(frame, threshold)
        runs.append(
            {
                "arch": key[0],
                "seed": key[1],
                "name": f"{key[0]}, seed {key[1]}",
                "weights": ev.get("weights") or "unknown",
                "checkpoint": ev.get("checkpoint"),
                "image_size": ev.get("image_size"),
                "test": ev["test"],
                "per_source": ev.get("per_source", {}),
                "external": ev.get("external", {}),
                "training": ev.get("training", {}) | timings.get(key, {}) | history_facts(history),
                "errors": errors,
                "figures": {
                    kind: png_file_uri(path.with_name(f"{stem}.{kind}.png"))
                    for kind in ("curves", "roc", "confusion")
                },
            }
        )
    return runs


def metric_table(runs: list[dict], labels: dict) -> dict:
    """All of cxr.metrics.binary_metrics, one column per run, formatted 'value (lo-hi)'."""
    pos, neg = labels["positive"], labels["negative"]

    def boot_ci(metric: dict) -> dict:
        return {"value": metric["value"], "ci95": metric.get("ci95_patient_bootstrap")}

    def cm(m: dict) -> str:
        c = m["confusion_matrix"]
        return f"TP {c['tp']} · FP {c['fp']} · FN {c['fn']} · TN {c['tn']}"

    spec = [
        ("test images", "", lambda m: str(m["n"])),
        ("test patients", "", lambda m: str(m["n_patients"])),
        (f"{pos} / {neg} images", "", lambda m: f"{m['n_positive']} / {m['n_negative']}"),
        ("confusion matrix", f"positive = {pos}", cm),
        ("accuracy", "Wilson", lambda m: metric_text(m["accuracy"])),
        ("accuracy", "patient bootstrap", lambda m: metric_text(boot_ci(m["accuracy"]))),
        ("sensitivity", f"{pos} found; Wilson", lambda m: metric_text(m["sensitivity"])),
        ("specificity", f"{neg} cleared; Wilson", lambda m: metric_text(m["specificity"])),
        ("PPV", "precision; Wilson", lambda m: metric_text(m["ppv"])),
        ("NPV", "Wilson", lambda m: metric_text(m["npv"])),
        ("F1", "patient bootstrap", lambda m: metric_text(m["f1"])),
        ("ROC AUC", "patient bootstrap", lambda m: metric_text(m["roc_auc"])),
        ("Brier score", "lower is better", lambda m: num(m["brier"], 3)),
        ("calibration error", "ECE, 10 bins", lambda m: num(m["calibration_error"], 3)),
        ("log loss", "", lambda m: num(m["loss"], 3)),
        ("threshold", f"P({pos}) ≥ threshold", lambda m: num(m["threshold"], 2)),
    ]
    rows = [
        {"label": label, "note": note, "cells": [fn(r["test"]) for r in runs]}
        for label, note, fn in spec
    ]
    return {"columns": [r["name"] for r in runs], "rows": rows}


def headline(runs: list[dict], summary: dict) -> list[dict]:
    """Per architecture: mean over seeds and each run's value with its 95% interval."""
    by_arch: dict[str, list[dict]] = {}
    for run in runs:
        by_arch.setdefault(run["arch"], []).append(run)
    rows = []
    for arch, arch_runs in by_arch.items():
        cells = []
        for key, _ in HEADLINE:
            per_run = []
            for run in arch_runs:
                metric = run["test"][key]
                ci = metric.get("ci95_patient_bootstrap") or metric.get("ci95")
                per_run.append({"seed": run["seed"], "text": est(metric["value"], ci)})
            mean = (summary.get(arch, {}).get(key) or {}).get("mean")
            cells.append({"mean": num(mean), "runs": per_run})
        rows.append({"arch": arch, "seeds": [r["seed"] for r in arch_runs], "cells": cells})
    return rows


def seed_spread(summary: dict) -> dict:
    """eval/summary.json as rows: mean, SD and range over seeds per architecture and metric."""
    names = dict(HEADLINE) | {"f1": "F1"}
    keys = [k for k in names if any(k in entry for entry in summary.values())]
    for entry in summary.values():
        keys += sorted(k for k in entry if k.startswith("external_fpr_") and k not in keys)
    rows = []
    for arch, entry in summary.items():
        cells = []
        for key in keys:
            s = entry.get(key) or {}
            if s.get("mean") is None:
                cells.append({"mean": "n/a", "range": ""})
            else:
                cells.append(
                    {
                        "mean": f"{s['mean']:.2f} ± {s['sd']:.2f}",
                        "range": f"{s['min']:.2f}-{s['max']:.2f}",
                    }
                )
        rows.append({"arch": arch, "n_seeds": len(entry.get("seeds", [])), "cells": cells})
    columns = [names.get(k) or f"external FPR, {k.removeprefix('external_fpr_')}" for k in keys]
    return {"columns": columns, "rows": rows}


def external_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        for source, entry in sorted(run["external"].items()):
            fpr = entry["false_positive_rate"]
            rows.append(
                {
                    "run": run["name"],
                    "source": source,
                    "images": fpr["n"],
                    "patients": entry.get("patients"),
                    "k": fpr["k"],
                    "fpr": pct_est(fpr["value"], fpr["ci95"]),
                    "value": fpr["value"],
                    "threshold": fpr.get("threshold"),
                }
            )
    return rows


def per_source_rows(runs: list[dict]) -> list[dict]:
    rows = []
    for run in runs:
        for source, entry in sorted(run["per_source"].items()):
            acc = entry["accuracy"]
            rows.append(
                {
                    "run": run["name"],
                    "source": source,
                    "images": acc["n"],
                    "patients": entry.get("patients"),
                    "accuracy": pct_est(acc["value"], acc["ci95"]),
                }
            )
    return rows


# ---------------------------------------------------------------- caveats


def small_data_caveats(runs: list[dict], counts: dict, summary: dict) -> dict:
    """How much a test set of this size can show, from the runs' own numbers."""
    if not runs:
        return {}
    test = runs[0]["test"]
    n, n_pos, n_neg = test["n"], test["n_positive"], test["n_negative"]

    def widths(get) -> dict:
        values = [w for w in (width_points(get(r["test"])) for r in runs) if w is not None]
        return {"min": min(values), "max": max(values)} if values else None

    accuracies = [r["test"]["accuracy"]["value"] for r in runs]
    mean_acc = sum(accuracies) / len(accuracies)
    arch_means = [
        entry["accuracy"]["mean"]
        for entry in summary.values()
        if (entry.get("accuracy") or {}).get("mean") is not None
    ]
    sds = [
        entry["accuracy"]["sd"]
        for entry in summary.values()
        if (entry.get("accuracy") or {}).get("n", 0) > 1
    ]
    return {
        "n": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "n_patients": test["n_patients"],
        "splits": counts,
        "one_image_points": 100.0 / n if n else None,
        "one_positive_points": 100.0 / n_pos if n_pos else None,
        "one_negative_points": 100.0 / n_neg if n_neg else None,
        "accuracy_wilson_width": widths(lambda t: t["accuracy"]["ci95"]),
        "accuracy_boot_width": widths(lambda t: t["accuracy"].get("ci95_patient_bootstrap")),
        "sensitivity_width": widths(lambda t: t["sensitivity"]["ci95"]),
        "auc_width": widths(lambda t: t["roc_auc"]["ci95"]),
        "mean_accuracy": mean_acc,
        "detectable_points": 100.0 * detectable_difference(mean_acc, n)
        if n and 0 < mean_acc < 1
        else None,
        "detectable_at": mean_acc if 0 < mean_acc < 1 else None,
        "arch_range_points": 100.0 * (max(arch_means) - min(arch_means))
        if len(arch_means) > 1
        else None,
        "max_seed_sd_points": 100.0 * max(sds) if sds else None,
        **external_caveats(runs),
    }


def external_caveats(runs: list[dict]) -> dict:
    """False-positive rate on external healthy images next to the test split's (1 - spec.)."""
    external = [entry["false_positive_rate"] for r in runs for entry in r["external"].values()]
    values = [e["value"] for e in external if e["value"] is not None]
    test = [1 - r["test"]["specificity"]["value"] for r in runs
            if r["test"]["specificity"]["value"] is not None]  # fmt: skip
    if not values or not test:
        return {"external_fpr": None}
    sources = sorted({s for r in runs for s in r["external"]})
    return {
        "external_fpr": {"min": 100 * min(values), "max": 100 * max(values)},
        "test_fpr": {"min": 100 * min(test), "max": 100 * max(test)},
        "external_images": external[0]["n"],
        "external_sources": sources,
    }


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def leakage_caveats(audit: dict, labels: dict) -> dict:
    """The audit's numbers arranged for the caveats section."""
    counter = audit.get("image_level_counterfactual") or {}
    sources_per_label: dict[str, set] = {}
    for row in audit.get("label_source", []):
        sources_per_label.setdefault(row["label"], set()).add(row["source"])
    probe = audit.get("trivial_feature_probe") or {}
    means = probe.get("class_means", {})
    class_order = [labels["positive"], labels["negative"]]
    class_order = [c for c in class_order if c in means] + sorted(set(means) - set(class_order))
    strongest = [
        {
            "feature": f["feature"],
            "coefficient": f["coefficient"],
            "means": [means[c].get(f["feature"]) for c in class_order],
        }
        for f in probe.get("strongest_features", [])
    ]
    verdict_of = {v["check"]: v for v in audit.get("verdicts", [])}
    return {
        "counterfactual": counter,
        "leaked_patient_share": counter["patients_in_train_and_test"] / counter["patients_total"]
        if counter.get("patients_total")
        else None,
        "leaked_test_share": counter["test_images_whose_patient_is_in_train"]
        / counter["test_images"]
        if counter.get("test_images")
        else None,
        "overlap": audit.get("patient_overlap", {}),
        "near_duplicates": audit.get("near_duplicates", {}),
        "label_source": sorted(
            audit.get("label_source", []),
            key=lambda r: (r["label"] != labels["positive"], r["source"], _split_rank(r["split"])),
        ),
        "sources_per_label": {k: sorted(v) for k, v in sorted(sources_per_label.items())},
        "trivial": probe,
        "class_order": class_order,
        "strongest": strongest,
        "border": audit.get("border_probe") or {},
        "thresholds": audit.get("thresholds", {}),
        "verdict_of": verdict_of,
    }


# ---------------------------------------------------------------- context, render, write


def _csv(path: str) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient": str}, keep_default_na=False)


def build_context(
    inputs: dict[str, str | list[str]],
    *,
    config: dict,
    sources: dict,
    labels: dict,
    protocols: list[dict] | None = None,
    primary: str = "patient",
    repo_dir: Path | None = None,
    image_root: Path | None = None,
    now: datetime.datetime | None = None,
) -> dict:
    """Read the workflow's outputs named in `inputs` (rule render_report's input names) and
    derive every number the templates show. Relative image paths resolve against image_root
    (default: the working directory, where Snakemake runs the script)."""
    image_root = Path.cwd() if image_root is None else Path(image_root)
    positive, negative = labels["positive"], labels["negative"]
    flow = read_json(inputs["flow"])
    images = _csv(inputs["images"])
    exclusions = _csv(inputs["exclusions"])
    splits = _csv(inputs["splits"])
    split_summary = read_json(inputs["split_summary"])
    manifest = read_json(inputs["manifest"])
    audit = read_json(inputs["audit"])
    runs = load_runs(inputs)
    summary = read_json(inputs["eval_summary"])
    order = list(dict.fromkeys(r["arch"] for r in runs)) + sorted(summary)
    eval_summary = {arch: summary[arch] for arch in dict.fromkeys(order) if arch in summary}

    weights = sorted({r["weights"] for r in runs})
    random_weights = any(w.lower().startswith(("none", "random")) for w in weights)
    dataset = str(config.get("dataset", "unknown"))
    max_pixels = int((config.get("curation") or {}).get("max_pixels", 50_000_000))
    split_counts = split_summary.get("counts", {})

    checksums = [
        {"file": f"{split}/{shard['file']}", "sha256": shard["sha256"], "count": shard["count"]}
        for split, entry in manifest.get("splits", {}).items()
        for shard in entry.get("shards", [])
    ]
    for name in ("images", "exclusions", "splits"):
        checksums.append(
            {"file": Path(inputs[name]).name, "sha256": sha256_file(inputs[name]), "count": None}
        )

    now = now or datetime.datetime.now(datetime.UTC)
    context = {
        "title": (config.get("report") or {}).get("title") or "cxr-repro report",
        "generated_at": now.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        "dataset": dataset,
        "labels": {"positive": positive, "negative": negative},
        "weights": {"values": weights, "random": random_weights},
        "sources": source_rows(sources),
        "classes": class_counts(splits, positive),
        "external_counts": split_counts.get("external"),
        "flow": {
            "picture": curation_flow_uri(flow),
            "table": flow_table(flow),
            "total": flow.get("total"),
            "included": flow.get("included"),
            "excluded": flow.get("excluded"),
        },
        "exclusions": exclusion_table(exclusions),
        "composition": composition(splits, positive),
        "split_method": split_summary.get("method", ""),
        "split_fractions": split_summary.get("fractions", {}),
        "licences": licence_table(images),
        "metadata": metadata_rows(images),
        "samples": sample_images(
            images, positive=positive, image_root=image_root, max_pixels=max_pixels
        ),
        "runs": runs,
        "headline": headline(runs, eval_summary),
        "metric_table": metric_table(runs, labels),
        "seed_spread": seed_spread(eval_summary),
        "external": external_rows(runs),
        "per_source": per_source_rows(runs),
        "verdicts": audit.get("verdicts", []),
        "small": small_data_caveats(runs, split_counts, eval_summary),
        "leakage": leakage_caveats(audit, labels),
        "border_examples": png_file_uri(inputs["border_examples"])
        if inputs.get("border_examples")
        else None,
        "reproducibility": {
            "config_yaml": yaml.safe_dump(plain(config), sort_keys=False, allow_unicode=True),
            "packages": package_versions(),
            "commit": git_commit(repo_dir),
            "checksums": checksums,
            "shard_encoding": manifest.get("encoding"),
            "shard_image_size": manifest.get("image_size"),
            "commands": commands(dataset, default_dataset(repo_dir)),
        },
    }
    context.update(
        protocol_context(
            inputs,
            context,
            config=config,
            protocols=protocols or [],
            primary=primary,
            images=images,
            audit=audit,
            image_root=image_root,
        )  # fmt: skip
    )
    return context


def protocol_context(
    inputs: dict, context: dict, *, config: dict, protocols: list[dict], primary: str,
    images: pd.DataFrame, audit: dict, image_root: Path,
) -> dict:  # fmt: skip
    """The sections about protocols: reproduction, learning curve, marks, conclusion, CLAIM."""
    from cxr import claim
    from cxr import report_protocols as sections

    names = [p["name"] for p in protocols]
    extra: dict[str, Any] = {"primary": primary, "protocols": protocols}
    comparison = read_json(inputs["comparison"]) if inputs.get("comparison") else None
    extra["reproduction"] = sections.reproduction(comparison, protocols) if comparison else None
    curve_names = [p["name"] for p in protocols if p.get("train_fractions")]
    extra["learning_curves"] = sections.learning_curve(
        [pd.read_csv(p) for p in inputs.get("learning_curves", [])],
        [png_file_uri(p) for p in inputs.get("learning_curve_plots", [])],
        curve_names[: len(inputs.get("learning_curves", []))],
    )
    summaries = dict(zip(names, map(read_json, inputs.get("protocol_summaries", [])), strict=False))
    removed = dict(zip(names, map(_csv, inputs.get("protocol_removed", [])), strict=False))
    marks = {"min_area": 0.0005, "ids": [], **(config.get("marks") or {})}
    extra["marks"] = sections.marks_section(
        images, marks, summaries, removed, image_root=image_root
    )
    extra["conclusion"] = sections.conclusion(
        summaries.get(primary, {}), extra["reproduction"] or {"rows": []}, audit,
        context["labels"], context["small"],
    )  # fmt: skip
    context = {**context, **extra}
    extra["checklist"] = claim.checklist(sections.claim_facts(context, config, protocols, images))
    return extra


def environment(template_dir: Path) -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template, and undefined names as errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, est=est, pct=pct, short=short)
    return env


def render(context: dict, template_dir: Path) -> str:
    return environment(Path(template_dir)).get_template("report.html.j2").render(**context)


def write_report(
    inputs: dict[str, str | list[str]],
    output: str | Path,
    *,
    config: dict,
    sources: dict,
    labels: dict,
    template_dir: str | Path,
    protocols: list[dict] | None = None,
    primary: str = "patient",
) -> None:
    """Build the context, render report.html.j2 and write `output` atomically."""
    template_dir = Path(template_dir)
    context = build_context(
        inputs, config=config, sources=sources, labels=labels, protocols=protocols,
        primary=primary, repo_dir=template_dir.parent,
    )  # fmt: skip
    html = render(context, template_dir)
    with atomic_open(output, "w", encoding="utf-8") as handle:
        handle.write(html)
    log.info("wrote %s (%d kB)", output, len(html) // 1024)
