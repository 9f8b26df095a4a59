"""The HTML report: built from small results made by the real curate/split/metrics/audit
functions on the synthetic data set (no TensorFlow), checked for content, escaping and for
loading nothing from outside the page."""

from __future__ import annotations

import copy
import html
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, curation_rules, synthetic_sources
from cxr import plots, report
from cxr import provenance as cxr_provenance
from cxr.audit import audit_leakage
from cxr.compare import compare_protocols
from cxr.curate import curate
from cxr.errors import DataError
from cxr.evaluate import evaluate_predictions, summarise
from cxr.generalisation import generalisation
from cxr.io import read_json, sha256_file, write_csv, write_json
from cxr.repeats import optimism_over_repeats
from cxr.report.checklist import WORKFLOW_FACTS, claim_facts, section_anchors
from cxr.report.figures import png_file_uri
from cxr.report.training import load_runs
from cxr.split import image_level_counterfactual, split_patients, split_protocol
from cxr.split import summarise as split_counts

TEMPLATES = REPO / "report"
CHROMIUM = Path("/usr/bin/chromium")
FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
RUNS = (("MobileNet", 0), ("MobileNet", 1), ("DenseNet121", 0))  # two seeds of one
LABELS = {"positive": "covid", "negative": "normal"}
SECTIONS = section_anchors(TEMPLATES)  # the <section id> of each template report.html.j2 includes
# As config.yaml's synthetic dataset: each external source alone, then the named group.
EXTERNAL_SETS = {"nih": ["nih"], "covid_later": ["covid_later"],
                 "temporal": ["covid_later", "nih"]}  # fmt: skip
MARKS = {"chroma_threshold": 60, "min_area": 0.0005, "ids": []}
ALERT = "<script>alert(1)</script>"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
WEIGHTS = "none (random, BatchNorm recalibrated)"
TIMINGS = ("seconds_features", "seconds_fit", "resumed_from_epoch")  # in a run's train summary
EXTERNAL_PER_SOURCE = 5  # saliency: external images mapped per source and class
OVERLAYS = 2  # saliency.overlays: images the report shows per outcome and architecture


def _png(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def _saliency(stem: Path, evaluated: pd.DataFrame, arch: str) -> tuple[str, str, str]:
    """A run's saliency outputs as explain_model writes them (cxr.saliency.statistics), from
    made-up maps: healthy images hot in the top-left corner (a marker), the others in the
    middle; the disease images' opacity planted at the middle, so the pointing game scores.
    External images: at most EXTERNAL_PER_SOURCE per source and class."""
    from cxr.saliency import select_images, selection, statistics, write_arrays

    predictions = select_images(evaluated, EXTERNAL_PER_SOURCE, seed=2020)
    n, side = len(predictions), 16
    maps = np.zeros((n, side, side), np.float32)
    healthy = (predictions["label"] == 0).to_numpy()
    maps[healthy, :2, :2] = 1.0
    maps[~healthy, 6:10, 6:10] = 1.0
    peaks = np.where(healthy[:, None], [[1 / 16, 1 / 16]], [[0.5, 0.5]])
    boxes = {
        i: {"opacity": [[0.3, 0.3, 0.7, 0.7]]}
        for i, y in zip(predictions["id"], predictions["label"], strict=True)
        if y == 1
    }
    result = statistics(
        predictions, {"gradcam": (maps, peaks), "occlusion": (maps, peaks)}, threshold=0.5,
        border_fraction=0.125, corner_fraction=0.125, boxes=boxes, labels=LABELS, n_boot=50,
        seed=0,
    )  # fmt: skip
    chosen = selection(evaluated, predictions, per_source=EXTERNAL_PER_SOURCE, seed=2020,
                       labels=LABELS)  # fmt: skip
    result = {"architecture": arch, "protocol": "patient", "run": "seed0",
              "selection": chosen, **result,
              "methods": {m: {"description": f"{m} made up", "cells": [4, 4]}
                          for m in ("gradcam", "occlusion")}}  # fmt: skip
    write_json(f"{stem}.saliency.json", result)
    rng = np.random.default_rng(0)
    write_arrays(f"{stem}.saliency.npz", {
        "ids": predictions["id"].to_numpy(str),
        "images": rng.integers(0, 255, (n, side, side), dtype=np.uint8),
        "gradcam": maps.astype(np.float16), "occlusion": maps.astype(np.float16),
        "gradcam_peaks": peaks, "occlusion_peaks": peaks,
    })  # fmt: skip
    write_json(f"{stem}.saliency.cost.json", {
        "images": n, "seconds": {"gradcam": 0.1, "occlusion": 1.0},
        "seconds_per_image": {"gradcam": 0.0123, "occlusion": 0.4567},
    })  # fmt: skip
    return f"{stem}.saliency.json", f"{stem}.saliency.npz", f"{stem}.saliency.cost.json"


def _predictions(splits: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Noisy but informative P(covid) for the test and external images."""
    rows = splits[splits["split"].isin(["test", "external"])].sort_values(["split", "id"])
    rng = np.random.default_rng(seed)
    prob = np.clip(0.5 + 0.3 * (2 * rows["y"] - 1) + rng.normal(0, 0.25, len(rows)), 0, 1)
    return pd.DataFrame(
        {
            "split": rows["split"],
            "id": rows["id"],
            "patient": rows["patient"],
            "source": rows["source"],
            "label": rows["y"],
            "probability": prob,
        }
    ).reset_index(drop=True)


@pytest.fixture(scope="module")
def results(synthetic_root, tmp_path_factory) -> dict:
    """A results/ tree like the workflow's, and the rule's `inputs` dict pointing into it."""
    out = tmp_path_factory.mktemp("results")
    sources = synthetic_sources(synthetic_root)
    images, exclusions, flow = curate(sources, curation_rules(), seed=2020)
    splits = split_patients(images, FRACTIONS, 2020)
    split_summary = {
        "fractions": FRACTIONS,
        "seed": 2020,
        "method": "sklearn StratifiedGroupKFold: test fold, then val fold of the rest",
        "counts": split_counts(splits),
        "image_level_counterfactual": image_level_counterfactual(images, 0.2, 2020),
    }
    inputs = {
        "flow": out / "curated/flow.json",
        "images": out / "curated/images.csv",
        "exclusions": out / "curated/exclusions.csv",
        "splits": out / "splits/splits.csv",
        "split_summary": out / "splits/summary.json",
        "manifest": out / "shards/manifest.json",
        "eval_summary": out / "eval/summary.json",
        "audit": out / "audit/leakage.json",
        "border_examples": out / "audit/border_examples.png",
    }
    write_json(inputs["flow"], flow)
    write_csv(inputs["images"], images)
    write_csv(inputs["exclusions"], exclusions)
    write_csv(inputs["splits"], splits)
    write_json(inputs["split_summary"], split_summary)
    manifest = {"encoding": "PNG, 8-bit grayscale", "image_size": 64, "splits": {}}
    for split, part in splits.groupby("split"):
        shard = {"file": f"{split}-00000-of-00001.tfrecord", "count": len(part),
                 "sha256": f"{len(part):02d}" * 32}  # fmt: skip
        manifest["splits"][split] = {"count": len(part), "shards": [shard]}
    write_json(inputs["manifest"], manifest)

    # As rule render_report declares them: per-run inputs in the same run order, and the
    # figures as curves for every run, then roc for every run, then confusion for every run.
    evaluations, paths = [], {"evaluations": [], "predictions": [], "histories": [],
                              "train_summaries": []}  # fmt: skip
    paths |= {"saliency": [], "saliency_maps": [], "saliency_costs": []}
    figures: dict[str, list[str]] = {"curves": [], "roc": [], "confusion": []}
    for i, (arch, seed) in enumerate(RUNS):
        predictions = _predictions(splits, seed=i)
        ev = evaluate_predictions(
            predictions, threshold=0.5, n_boot=50, seed=0, external_sets=EXTERNAL_SETS
        )
        ev |= {
            "architecture": arch, "seed": seed, "checkpoint": "final", "weights": WEIGHTS,
            "image_size": 64,
            "training": {"path": "cached-features", "epochs_run": 3, "best_epoch": 2,
                         "best_val_loss": 0.5, "seconds_fit": 1.25, "seconds_features": 0.5,
                         "resumed_from_epoch": 0},
        }  # fmt: skip
        evaluations.append(ev)
        stem = out / f"eval/{arch}/seed{seed}"
        write_json(f"{stem}.json", ev)
        write_csv(f"{stem}.predictions.csv", predictions)
        for kind, colour in (("roc", "red"), ("confusion", "green"), ("curves", "blue")):
            _png(Path(f"{stem}.{kind}.png"), colour)
            figures[kind].append(f"{stem}.{kind}.png")
        history = out / f"models/{arch}/seed{seed}/history.csv"
        history.parent.mkdir(parents=True)
        write_csv(
            history,
            pd.DataFrame(
                {"epoch": [1, 2, 3], "loss": [0.9, 0.6, 0.5], "accuracy": [0.5, 0.7, 0.875],
                 "val_loss": [0.8, 0.5, 0.6], "val_accuracy": [0.5, 0.6, 0.7]}
            ),
        )  # fmt: skip
        train_summary = history.with_name("summary.json")
        write_json(train_summary, {k: ev["training"][k] for k in TIMINGS})
        paths["evaluations"].append(f"{stem}.json")
        paths["predictions"].append(f"{stem}.predictions.csv")
        paths["histories"].append(str(history))
        paths["train_summaries"].append(str(train_summary))
        if seed == 0:  # saliency.runs: first
            statistics, maps, cost = _saliency(stem, predictions, arch)
            paths["saliency"].append(statistics)
            paths["saliency_maps"].append(maps)
            paths["saliency_costs"].append(cost)
    paths["figures"] = [path for kind in ("curves", "roc", "confusion") for path in figures[kind]]
    write_json(inputs["eval_summary"], summarise(evaluations))

    border = {"architecture": "DenseNet121", "auc": 0.91, "ci95": [0.8, 0.97],
              "border_fraction": 0.125, "model": "the article's head", "n": 98, "patients": 71,
              "weights": WEIGHTS}  # fmt: skip
    settings = {"border_fraction": 0.125, "cv_folds": 3, "near_duplicate_bits": 16,
                "auc_flag": 0.75, "auc_warn": 0.6}  # fmt: skip
    audit, _ = audit_leakage(
        images, exclusions, splits, split_summary, border,
        settings=settings, seed=0, n_boot=50, max_pixels=50_000_000,
    )  # fmt: skip
    write_json(inputs["audit"], audit)
    _png(inputs["border_examples"], "grey")
    inputs = {k: str(v) for k, v in inputs.items()} | paths
    inputs |= _protocol_results(out, images, splits, evaluations, paths)
    return {"inputs": inputs, "images": images, "splits": splits, "sources": sources}


def _protocol_results(out, images, splits, patient_evals, paths) -> dict:
    """The protocols' outputs: article (image split), no_marks, a learning curve, comparison."""
    settings = {"fractions": FRACTIONS, "seed": 2020}
    made = {}
    for name, method, marks in (("patient", "patient", None), ("article", "image", None),
                                ("no_marks", "patient", MARKS)):  # fmt: skip
        made[name] = split_protocol(images, {"protocol": name, "method": method, **settings}, marks)
    runs = [
        {"evaluation": ev | {"protocol": "patient", "run": f"seed{ev['seed']}"},
         "predictions": pd.read_csv(p, dtype={"patient": str}, keep_default_na=False)}
        for ev, p in zip(patient_evals, paths["predictions"], strict=True)
    ]  # fmt: skip
    summaries = {"patient": summarise(patient_evals)}
    for name in ("article", "no_marks"):
        evals = []
        for i, arch in enumerate(dict.fromkeys(a for a, _ in RUNS)):
            predictions = _predictions(made[name][0], seed=10 + i)
            ev = evaluate_predictions(predictions, threshold=0.5, n_boot=50, seed=0)
            ev |= {"architecture": arch, "seed": 0, "protocol": name, "run": "seed0"}
            evals.append(ev)
            runs.append({"evaluation": ev, "predictions": predictions})
        summaries[name] = summarise(evals)
    comparison = compare_protocols(
        runs, [m[2] for m in made.values()], article="article", primary="patient",
        threshold=0.5, n_boot=50, seed=0,
    )  # fmt: skip
    held_out = generalisation(runs, protocol="patient", threshold=0.5, n_boot=50, seed=0)
    write_json(out / "protocols/generalisation.json", held_out)
    plots.generalisation(held_out, out / "protocols/generalisation.png")
    extra = {
        "generalisation": str(out / "protocols/generalisation.json"),
        "generalisation_plot": str(out / "protocols/generalisation.png"),
        "comparison": out / "protocols/comparison.json",
        "learning_curves": [str(out / "learning_curve/eval/learning_curve.csv")],
        "learning_curve_plots": [str(out / "learning_curve/eval/learning_curve.png")],
        "protocol_summaries": [],
        "protocol_removed": [],
    }
    write_json(extra["comparison"], comparison)
    # Repeated splits: made-up per-repeat metrics whose optimism is known (article + 0.20 on
    # every repeat for MobileNet: "optimistic"; noise around 0 for DenseNet121: "cannot tell").
    per_repeat = {"article": {}, "patient": {}}
    base = [0.6, 0.65, 0.7, 0.55, 0.6, 0.62]
    shifts = {"MobileNet": [0.2] * 6, "DenseNet121": [0.1, -0.1, 0.05, -0.05, 0.0, 0.02]}
    for arch, shift in shifts.items():
        article = [b + d for b, d in zip(base, shift, strict=True)]
        for name, values in (("patient", base), ("article", article)):
            per_repeat[name][arch] = pd.DataFrame(
                {"repeat": range(6), "n_test": 20, "n_test_patients": 15,
                 **{m: values for m in ("accuracy", "sensitivity", "specificity", "roc_auc")}}
            )  # fmt: skip
    counts = {p: [{"counts": {"test": {"images": 20}, "train": {"images": 70}}}] * 6
              for p in ("article", "patient")}  # fmt: skip
    repeated = optimism_over_repeats(per_repeat, counts, article="article", primary="patient")
    repeated["repeats"] = {"article": 6, "patient": 6}
    extra["repeats"] = [str(out / "protocols/repeats.json"), str(out / "protocols/repeats.png")]
    write_json(extra["repeats"][0], repeated)
    plots.repeated_optimism(repeated, extra["repeats"][1])
    for name in made:
        write_json(out / f"{name}/eval/summary.json", summaries[name])
        write_csv(out / f"{name}/splits/removed.csv", made[name][1])
        extra["protocol_summaries"].append(str(out / f"{name}/eval/summary.json"))
        extra["protocol_removed"].append(str(out / f"{name}/splits/removed.csv"))
    curve = pd.DataFrame(
        {"architecture": ["MobileNet", "MobileNet"], "train_fraction": [0.5, 1.0],
         "repeats": [2, 2], "train_patients": [20.0, 40.0], "train_images": [31.0, 62.0],
         "roc_auc_mean": [0.71, 0.83], "roc_auc_sd": [0.04, 0.02],
         "roc_auc_ci_width": [0.31, 0.22], "accuracy_mean": [0.66, 0.74],
         "accuracy_sd": [0.05, 0.03], "accuracy_ci_width": [0.35, 0.3]}
    )  # fmt: skip
    write_csv(extra["learning_curves"][0], curve)
    _png(Path(extra["learning_curve_plots"][0]), "white")
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in extra.items()}


PROTOCOLS = [
    {"name": "article", "method": "image", "description": "the blog's protocol", "seeds": [0],
     "runs": 1, "train_fractions": [], "exclude_marks": False},
    {"name": "patient", "method": "patient", "description": "patient-disjoint", "seeds": [0, 1],
     "runs": 2, "train_fractions": [], "exclude_marks": False},
    {"name": "no_marks", "method": "patient", "description": "no marks", "seeds": [0],
     "runs": 1, "train_fractions": [], "exclude_marks": True},
    {"name": "learning_curve", "method": "patient", "description": "subsampled", "seeds": [0, 1],
     "runs": 4, "train_fractions": [0.5, 1.0], "exclude_marks": False},
]  # fmt: skip


def _config(dataset: str = "synthetic") -> dict:
    return {
        "dataset": dataset,
        "report": {"title": "Test report"},
        "curation": {"max_pixels": 50_000_000},
        "labels": LABELS,
        "marks": MARKS,
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 0.001},
        "evaluation": {"checkpoint": "final"},
        "notes": ALERT,  # config text must be escaped inside <pre> too
    }


@pytest.fixture(scope="module")
def context(results) -> dict:
    return report.build_context(
        results["inputs"], config=_config(), sources=results["sources"], labels=LABELS,
        protocols=PROTOCOLS, primary="patient", overlays=OVERLAYS,
    )  # fmt: skip


@pytest.fixture(scope="module")
def page(context) -> str:
    return report.render(context, TEMPLATES)


def _text(page: str) -> str:
    """Visible text with whitespace collapsed."""

    class Text(HTMLParser):
        def __init__(self):
            super().__init__()
            self.parts: list[str] = []

        def handle_data(self, data):
            self.parts.append(data)

    parser = Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def _tags(page: str) -> list[tuple[str, dict]]:
    class Tags(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags: list[tuple[str, dict]] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append((tag, dict(attrs)))

    parser = Tags()
    parser.feed(page)
    return parser.tags


def test_every_section_is_present(page):
    tags = _tags(page)
    ids = [attrs.get("id") for tag, attrs in tags if tag == "section"]
    assert ids == SECTIONS
    assert SECTIONS[0] == "summary" and SECTIONS[-1] == "checklist"
    assert page.count("<h2>") == len(SECTIONS)


def test_the_navigation_links_every_section_in_order(page):
    nav = re.search(r"<nav>(.*?)</nav>", page, re.DOTALL).group(1)
    assert re.findall(r'href="#([^"]+)"', nav) == SECTIONS


def test_numbers_come_from_the_results(results, page):
    text = _text(page)
    inputs = results["inputs"]
    for path in inputs["evaluations"]:
        test = read_json(path)["test"]
        acc = test["accuracy"]
        lo, hi = acc["ci95_patient_bootstrap"]
        assert f"{acc['value']:.2f} ({lo:.2f}-{hi:.2f})" in text  # headline and metric table
        lo, hi = acc["ci95"]
        assert f"{acc['value']:.2f} ({lo:.2f}-{hi:.2f})" in text
        auc = test["roc_auc"]
        assert f"{auc['value']:.2f} ({auc['ci95'][0]:.2f}-{auc['ci95'][1]:.2f})" in text
        fpr = read_json(path)["external"]["nih"]["false_positive_rate"]
        lo, hi = fpr["ci95"]
        assert f"{100 * fpr['value']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}%)" in text
    splits = results["splits"]
    test = splits[splits["split"] == "test"]
    assert f"{len(test)} images of {test['patient'].nunique()} patients" in text
    pool = splits[splits["split"] != "external"]
    for label, part in pool.groupby("label"):
        assert f"{len(part)} {label} images of {part['patient'].nunique()} patients" in text
    # one misclassified image moves accuracy by 100/n points
    assert f"{100 / len(test):.1f} points" in text
    counter = read_json(inputs["audit"])["image_level_counterfactual"]
    assert (
        f"{counter['patients_in_train_and_test']} of {counter['patients_total']} patients" in text
    )
    assert "Random weights." in text and WEIGHTS in text
    spread = read_json(inputs["eval_summary"])["MobileNet"]["accuracy"]
    assert f"{spread['mean']:.2f} ± {spread['sd']:.2f}" in text  # seed spread
    assert f"reaches {100 * spread['sd']:.1f} points" in text
    assert "covid/images/nejmc2000002_f1a.jpg" in text  # a metadata row


def test_metadata_is_escaped(results, page):
    notes = results["images"]["notes"]
    assert notes.str.contains(ALERT, regex=False).any(), "fixture lost the planted script"
    assert html.escape(ALERT, quote=False) in page
    assert "<script" not in page.lower()


def test_attributes_are_escaped(context):
    hostile = copy.deepcopy(context)
    hostile["samples"][0]["thumbs"][0]["id"] = f'x" onerror="alert(1)">{ALERT}'
    hostile["runs"][0]["name"] = f'Mobile"Net{ALERT}'
    page = report.render(hostile, TEMPLATES)
    assert "<script" not in page.lower()
    assert 'onerror="' not in page
    assert "x&#34; onerror=&#34;alert(1)&#34;&gt;&lt;script&gt;" in page


def test_nothing_is_loaded_from_outside(page):
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert page.index("Content-Security-Policy") < page.index("<style>")
    tags = _tags(page)
    assert not [t for t, _ in tags if t in {"script", "link", "iframe", "object", "embed"}]
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert len(images) >= 3 * len(RUNS) + 4  # figures and thumbnails
    for tag, attrs in tags:
        for name in ("src", "srcset", "poster", "data", "background"):
            if name in attrs:
                assert attrs[name].startswith("data:image/png;base64,"), (tag, name)
        if "href" in attrs:
            assert attrs["href"].startswith("#"), attrs["href"]
    lowered = page.lower()
    assert "url(" not in lowered and "@import" not in lowered


def test_reproducibility_facts(results, context, page):
    repro = context["reproducibility"]
    assert repro["commands"] == {
        "all": "snakemake --cores 4",
        "report": "snakemake --cores 1 --forcerun render_report",
    }
    manifest = read_json(results["inputs"]["manifest"])
    for entry in manifest["splits"].values():
        assert entry["shards"][0]["sha256"] in page
    assert report.sha256_file(results["inputs"]["images"]) in page
    names = [p["name"] for p in repro["packages"]]
    assert names == list(report.PACKAGES)
    assert f"notes: {ALERT}" in repro["config_yaml"]
    assert f"notes: {html.escape(ALERT, quote=False)}" in page


def test_write_report_is_atomic_and_complete(results, tmp_path):
    out = tmp_path / "report.html"
    report.write_report(
        results["inputs"], out, config=_config("article_local"), sources=results["sources"],
        labels=LABELS, template_dir=TEMPLATES, protocols=PROTOCOLS, primary="patient",
        overlays=OVERLAYS,
    )  # fmt: skip
    page = out.read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>")
    assert "snakemake --cores 4 --config dataset=article_local" in page
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_helpers():
    assert report.est(0.8, [0.58, 0.92]) == "0.80 (0.58-0.92)"
    assert report.est(None, [0.1, 0.2]) == "n/a"
    assert report.pct_est(0.25, [0.1018, 0.495]) == "25% (10-50%)"
    assert report.width_points([0.39, 0.78]) == pytest.approx(39.0)
    # (1.96 + 0.84) * sqrt(2 * 0.8 * 0.2 / 20) = 0.354
    assert report.detectable_difference(0.8, 20) == pytest.approx(0.3544, abs=1e-3)
    assert report.commands("synthetic", "synthetic")["all"] == "snakemake --cores 4"
    versions = report.package_versions(("jinja2", "no-such-package-xyz"))
    assert versions[1] == {"name": "no-such-package-xyz", "version": "not installed"}


def test_runs_pair_the_declared_inputs_by_position(results, tmp_path):
    inputs = results["inputs"]
    n = len(inputs["evaluations"])
    # A different picture for every declared figure, at paths that name no run.
    figures = []
    for i in range(len(inputs["figures"])):
        figures.append(str(tmp_path / f"figure{i}.png"))
        Image.new("RGB", (4, 4), (10 * i, 0, 0)).save(figures[-1])
    runs = load_runs(inputs | {"figures": figures})
    assert [(r["arch"], r["seed"]) for r in runs] == list(RUNS)
    for i, run in enumerate(runs):
        for k, kind in enumerate(("curves", "roc", "confusion")):  # rule render_report's order
            assert run["figures"][kind] == png_file_uri(figures[k * n + i]), (run["name"], kind)
    with pytest.raises(DataError, match="'train_summaries' lists 2 files for the 3 runs"):
        load_runs(inputs | {"train_summaries": inputs["train_summaries"][:2]})
    Path(figures[4]).unlink()
    with pytest.raises(DataError, match="figure4.png: figure missing"):
        load_runs(inputs | {"figures": figures})


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    assert report.git_commit(tmp_path) == "unknown"
    assert report.git_commit(None) == "unknown"


@pytest.mark.slow
def test_chromium_renders_the_report(page, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package chromium)")
    page_path = tmp_path / "report.html"
    page_path.write_text(page, encoding="utf-8")
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
            "--window-size=1200,3000", page_path.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # Console messages on a page without scripts mean a blocked load or a CSP violation.
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    assert shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        assert len(image.convert("L").getcolors(1 << 16) or []) > 10  # not a blank page


# ---------------------------------------------------------------- protocol sections


def test_saliency_section_shows_each_architecture_with_numbers(results, page):
    text = _section(page, "saliency")
    for arch in ("MobileNet", "DenseNet121"):
        assert f"{arch} (patient, seed0)" in text
    assert 'alt="saliency overlays of MobileNet"' in page
    # Made-up maps: healthy images put all their mass in the top-left corner, which covers
    # 2x2 of 16x16 pixels (1.6%), disease images none in the border strip.
    assert "1.6%" in text and "100.0%" in text
    # The verdict and its rule, and the pointing game (every disease call hits its box).
    assert "attention outside the lungs" in text and "Rule: flag if" in text
    assert "Pointing game" in text
    # The images mapped, those the bound left out, and the time per image (the cost file).
    evaluated = pd.read_csv(results["inputs"]["predictions"][0])
    test = int((evaluated["split"] == "test").sum())
    groups = evaluated[evaluated["split"] == "external"].groupby(["source", "label"]).size()
    cut = {key: n for key, n in groups.items() if n > EXTERNAL_PER_SOURCE}
    assert cut, "the made-up predictions must have an external source above the bound"
    mapped = test + sum(min(n, EXTERNAL_PER_SOURCE) for n in groups)
    assert f"Images mapped: {mapped} ({test} test, {mapped - test} external)" in text
    assert f"left out by the bound of {EXTERNAL_PER_SOURCE} per source and class" in text
    names = {1: LABELS["positive"], 0: LABELS["negative"]}
    for (source, label), n in cut.items():
        assert f"{EXTERNAL_PER_SOURCE} of {n} {source} ({names[label]}) mapped" in text
    assert "Grad-CAM 0.012 s, occlusion 0.457 s per image" in text


def _section(page: str, name: str) -> str:
    start = page.index(f'<section id="{name}">')
    return _text(page[start : page.index("</section>", start)])


def test_reproduction_table_puts_the_article_beside_the_patient_protocol(results, page):
    comparison = read_json(results["inputs"]["comparison"])
    text = _section(page, "reproduction")
    for arch, entry in comparison["architectures"].items():
        assert arch in text
        for side in ("article", "primary"):
            acc = entry[side]["accuracy"]
            assert f"{acc['value']:.2f} ({acc['ci95'][0]:.2f}-{acc['ci95'][1]:.2f})" in text
        diff = entry["optimism"]["accuracy"]
        lo, hi = diff["ci95"]
        assert f"{100 * diff['value']:+.0f} ({100 * lo:+.0f} to {100 * hi:+.0f})" in text
    leak = comparison["split_leakage"]["article"]
    assert leak["test_images_whose_patient_is_in_train"] > 0  # the image split leaks here
    assert (
        f"{leak['test_images_whose_patient_is_in_train']} of {leak['test_images']} test images"
        in text
    )
    for protocol in PROTOCOLS:
        assert protocol["name"] in text and protocol["description"] in text


def test_optimism_is_the_difference_of_the_two_columns(results):
    comparison = read_json(results["inputs"]["comparison"])
    for entry in comparison["architectures"].values():
        for key in comparison["compared"]:
            a, b = entry["article"][key]["value"], entry["primary"][key]["value"]
            diff = entry["optimism"][key]
            if a is not None and b is not None:
                assert diff["value"] == pytest.approx(a - b)
                assert diff["ci95"][0] <= diff["value"] <= diff["ci95"][1]


def test_repeated_splits_show_the_optimism_as_a_distribution(page):
    section = _text(_section(page, "reproduction"))
    assert "Over repeated splits" in section and "6 paired repeats" in section
    assert "corrected resampled t" in section and "Nadeau and Bengio" in section
    # MobileNet: +20 points on every repeat, whatever the interval; DenseNet121: noise.
    assert "+20 (+20 to +20) 100% optimistic" in section
    assert "cannot tell" in section
    assert 'alt="Paired differences article minus patient-disjoint' in page


def test_conclusion_reads_the_repeated_splits(context):
    text = " ".join(context["conclusion"])
    assert "Over 6 repeated splits" in text and "MobileNet +20" in text
    assert "For MobileNet the interval excludes 0" in text


def test_learning_curve_section_lists_every_row(page):
    text = _section(page, "learning-curve")
    assert "0.71 ± 0.04" in text and "0.83 ± 0.02" in text  # ROC AUC mean ± SD per fraction
    assert "20.0" in text and "40.0" in text  # training patients
    assert "Protocol learning_curve" in text


def test_marks_section_counts_marked_images_per_source(results, context, page):
    images = results["images"]
    marked = images[images["mark_area"].astype(float) >= MARKS["min_area"]]
    assert len(marked) > 0  # the synthetic generator plants coloured arrows
    assert context["marks"]["n_marked"] == len(marked)
    by_source = {(c["label"], c["source"]): c["marked"] for c in context["marks"]["counts"]}
    assert sum(by_source.values()) == len(marked)
    assert by_source[("covid", "covid")] == len(marked)  # arrows only on disease images
    assert len(context["marks"]["samples"]) == min(6, len(marked))
    removed = {p["name"]: p["removed"] for p in context["marks"]["protocols"]}
    assert removed == {"patient": 0, "article": 0, "no_marks": len(marked)}
    assert f"{len(marked)} curated images are marked" in _section(page, "marks")


def test_conclusion_is_written_from_the_numbers(context, page):
    text = " ".join(context["conclusion"])
    small = context["small"]
    assert f"({small['n']} images of {small['n_patients']} patients)" in text
    assert "article's own protocol" in text and "external healthy images" in text
    assert "flag the trivial-feature probe" in text  # the synthetic default is confounded
    assert text.split(".")[0] in _text(page)


def test_checklist_has_every_claim_item_and_valid_links(context, page):
    rows = context["checklist"]["rows"]
    assert [r["item"] for r in rows] == list(range(1, 43))
    anchors = {attrs.get("id") for tag, attrs in _tags(page) if tag == "section"}
    links = [a["href"] for tag, a in _tags(page) if tag == "a" and a.get("href", "")[:1] == "#"]
    assert links and all(href[1:] in anchors for href in links)
    by_item = {r["item"]: r for r in rows}
    assert by_item[31]["status"] == "met"  # saliency maps of every explained run
    assert by_item[31]["section"] == "saliency"
    assert by_item[32]["status"] == "met"  # an external source was evaluated


def test_the_checklist_reads_the_run_and_the_workflows_fixed_facts(results, context):
    images = results["images"]
    facts = claim_facts(context, _config(), PROTOCOLS, images)
    assert facts["intervals"] and facts["config_recorded"]  # read from the run
    assert facts["epochs"] == 3 and facts["model_selection"] == "final"  # from the config
    assert {k: facts[k] for k in WORKFLOW_FACTS} == WORKFLOW_FACTS
    # Each metric the checklist names is a row (or a row's note) of the results' table.
    shown = " ".join(f"{r['label']} {r['note']}" for r in context["metric_table"]["rows"])
    assert all(metric in shown for metric in WORKFLOW_FACTS["metrics"])


def test_the_checklist_of_a_workflow_without_its_fixed_facts(results, context):
    def rows(built: dict, **changes) -> dict[int, dict]:
        made = report.checklist.context(
            built, config=_config(), protocols=PROTOCOLS, images=results["images"],
            workflow={**WORKFLOW_FACTS, **changes},
        )  # fmt: skip
        return {r["item"]: r for r in made["checklist"]["rows"]}

    met = rows(context)
    assert [met[i]["status"] for i in (8, 13, 14, 28, 29, 33, 41)] == ["met"] * 7
    assert "leakage probes" in met[30]["why"] and "burnt-in marks" in met[30]["why"]
    bare = rows(context, exclusions_logged=False, metrics=[], marks_checked=False,
                leakage_audit=False, code_available=False, reference_standard="")  # fmt: skip
    assert [bare[i]["status"] for i in (8, 13, 14, 28, 33, 41)] == ["not met"] * 6
    assert "leakage" not in bare[30]["why"] and "marks" not in bare[30]["why"]
    # Facts of the run: a run without intervals, a report without its configuration.
    runs = copy.deepcopy(context["runs"])
    for run in runs:
        del run["test"]["accuracy"]["ci95_patient_bootstrap"]
    unrecorded = {**context["reproducibility"], "config_yaml": ""}
    other = rows({**context, "runs": runs, "reproducibility": unrecorded})
    assert other[29]["status"] == "not met" and other[36]["status"] == "not met"
    assert other[23]["status"] == "not met" and other[9]["status"] == "not met"


@pytest.fixture(scope="module")
def troubled(tmp_path_factory) -> dict:
    """Curation of three small folder sources: a label conflict between the two training ones
    (the same pixels as covid and as normal), and an external source whose every file is
    excluded; the data section's context of it."""
    from cxr.report import data

    root = tmp_path_factory.mktemp("troubled")
    seeds = {"pos": range(1, 4), "neg": [1, 12, 13]}  # neg/p1 has pos/p1's pixels
    for name, values in seeds.items():
        (root / name).mkdir()
        for i, seed in enumerate(values, start=1):
            pixels = np.random.default_rng(seed).integers(0, 255, (40, 40), np.uint8)
            Image.fromarray(pixels).save(root / name / f"p{i}.png")
    (root / "ext").mkdir()
    (root / "ext/p1.png").write_text("not an image")
    (root / "ext/p2.png").write_bytes(b"")
    (root / "ext/notes.txt").write_text("a stray file")

    def source(name, label, role="train"):
        return {"kind": "folder", "root": str(root / name), "label": label, "role": role,
                "patient_pattern": r"(p\d+)"}  # fmt: skip

    sources = {"pos": source("pos", "covid"), "neg": source("neg", "normal"),
               "ext": source("ext", "normal", "external")}  # fmt: skip
    images, exclusions, flow = curate(sources, curation_rules(min_side=8), seed=0)
    splits = images[["id", "patient", "source", "label", "y"]].assign(split="train")
    ctx = data.context(
        sources=sources, flow=flow, exclusions=exclusions, images=images, splits=splits,
        split_summary={"method": "patient", "fractions": FRACTIONS}, positive="covid",
        image_root=root, max_pixels=50_000_000,
    )  # fmt: skip
    return {"context": ctx, "exclusions": exclusions}


def _render(template: str, context: dict) -> str:
    return report.environment(TEMPLATES).get_template(template).render(**context)


def test_label_conflicts_are_counted_in_the_data_section(troubled):
    ctx = troubled["context"]
    assert [(c["source"], c["file"], c["label"]) for c in ctx["label_conflicts"]] == [
        ("pos", "p1.png", "covid"), ("neg", "p1.png", "normal")
    ]  # fmt: skip
    leakage = {"overlap": {"patients_in_several_splits": 0}}
    text = _text(_render("data.html.j2", ctx | {"leakage": leakage, "labels": LABELS}))
    assert (
        "2 images were excluded as label conflicts: the same pixels under two labels, so "
        "neither label can be trusted." in text
    )
    assert "pos p1.png covid same pixels as neg/p1.png, labelled 'normal'" in text
    # A dataset without the collection's annotations says so, and why it matters.
    assert "Expert annotations None: the dataset names no annotations." in text
    assert "cannot measure attention on the lungs" in text


def test_an_empty_external_source_says_it_was_configured_and_why_it_is_empty(troubled):
    ctx = troubled["context"]
    assert ctx["empty_sources"] == [
        {"name": "ext", "role": "external", "label": "normal", "total": 3,
         "reasons": "empty file 1, not an image 1, not an image file name (.txt) 1"}
    ]  # fmt: skip
    expected = (
        "Source ext (external, normal) was configured, but none of its 3 input files or rows "
        "was usable: empty file 1, not an image 1, not an image file name (.txt) 1."
    )
    leakage = {"overlap": {"patients_in_several_splits": 0}}
    assert expected in _text(_render("data.html.j2", ctx | {"leakage": leakage, "labels": LABELS}))
    summary = {
        "classes": [], "external_counts": None, "sources": ctx["sources"], "dataset": "x",
        "weights": {"values": ["none"], "random": False}, "findings": [], "headline": [],
        "primary": "patient", "small": {"n": 0, "n_patients": 0}, "verdicts": [],
        "labels": LABELS, "empty_sources": ctx["empty_sources"], "generalisation": None,
    }  # fmt: skip
    text = _text(_render("summary.html.j2", summary))
    assert "no external test: the external source ext was configured, but none of its 3 " in text
    assert "no external source" not in text


def test_results_and_reproduction_name_the_empty_external_source(troubled):
    empty = troubled["context"]["empty_sources"]
    table = {"columns": [], "rows": []}
    results = {"metric_table": table, "seed_spread": table, "per_source": [], "external": [],
               "runs": [], "labels": LABELS, "empty_sources": empty}  # fmt: skip
    text = _text(_render("results.html.j2", results))
    assert "No external test: the external source ext was configured, but curation kept" in text
    assert "has no external source" not in text
    metric = {"name": "accuracy", "article": "", "primary": "", "optimism": ""}
    row = {"arch": "MobileNet", "article_run": "seed0", "primary_run": "seed0", "external": [],
           "metrics": [metric]}  # fmt: skip
    reproduction = {"protocols": [], "primary": "patient", "labels": LABELS,
                    "empty_sources": empty, "repeated": None, "reproduction": {
                        "article_ran": True, "article_leakage": None, "primary": "patient",
                        "rows": [row]}}  # fmt: skip
    text = _text(_render("reproduction.html.j2", reproduction))
    assert "ext: configured, no usable image (see Data)" in text


def test_every_figure_and_table_of_the_report_shows_provenance(results, tmp_path):
    """With a job record for every input, each table and figure is followed by its note."""
    inputs = dict(results["inputs"])
    files = [p for v in inputs.values() for p in ([v] if isinstance(v, (str, Path)) else v)]
    sm = SimpleNamespace(
        rule="fixture", wildcards={}, input=[], output=[str(p) for p in files],
        params=SimpleNamespace(items=lambda: {}.items()),
    )  # fmt: skip
    cxr_provenance.record_job(sm, REPO / "scripts/render_report.py", jobs_dir=tmp_path / "jobs")
    found = cxr_provenance.collect([str(p) for p in files], jobs_dir=tmp_path / "jobs")
    path = tmp_path / "provenance.json"
    path.write_text(json.dumps(found))
    inputs["provenance"] = str(path)
    context = report.build_context(
        inputs, config=_config(), sources=results["sources"],
        labels=LABELS, protocols=PROTOCOLS, primary="patient", overlays=OVERLAYS,
    )  # fmt: skip
    page = report.render(context, TEMPLATES)
    tables = page.count("</table>")
    figures = page.count("</figcaption>")
    assert tables > 25 and figures > 10
    assert len(re.findall(r'</table>\s*<details class="prov">', page)) == tables
    assert len(re.findall(r'</figcaption>\s*<details class="prov">', page)) == figures
    assert "job <code>fixture</code>" in page
    evaluation = str(results["inputs"]["evaluations"][0])
    assert sha256_file(evaluation)[:12] in page


def test_findings_answer_three_questions_each_with_numbers_and_a_link(context, page):
    findings = context["findings"]
    assert [f["key"] for f in findings] == ["inflate", "transfer", "look"]
    for finding in findings:
        text = " ".join(finding["sentences"])
        assert any(c.isdigit() for c in text), finding
        assert f'<section id="{finding["anchor"]}"' in page
        summary = page[page.index('<section id="summary">') :]
        assert f'<a href="#{finding["anchor"]}">' in summary[: summary.index("</section>")]
    assert context["conclusion"] == [s for f in findings for s in f["sentences"]]
    assert "The article's own protocol" in " ".join(findings[0]["sentences"])
    assert "external healthy images" in " ".join(findings[1]["sentences"])
    assert "leakage probes" in " ".join(findings[2]["sentences"])
