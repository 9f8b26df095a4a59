"""The whole workflow on a tiny synthetic config: outputs' content, determinism, audit controls."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from cxr.io import sha256_file
from workflow import run_workflow

pytestmark = pytest.mark.slow
PROTOCOLS = ("article", "patient", "no_marks", "learning_curve")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    run_workflow(workdir, "tiny.yaml")
    return workdir


def load(path):
    return json.loads(path.read_text())


def test_accounting_and_disjoint_splits(tiny):
    flow = load(tiny / "results/curated/flow.json")
    images = pd.read_csv(tiny / "results/curated/images.csv")
    exclusions = pd.read_csv(tiny / "results/curated/exclusions.csv")
    assert len(images) + len(exclusions) == flow["total"] > 0
    splits = pd.read_csv(tiny / "results/patient/splits/splits.csv")
    assert (splits.groupby("patient")["split"].nunique() == 1).all()
    manifest = load(tiny / "results/shards/manifest.json")
    assert sum(s["count"] for s in manifest["shards"]) == manifest["count"] == len(images)
    # Every protocol accounts for every curated image: in its split table or removed.
    for protocol in PROTOCOLS:
        kept = pd.read_csv(tiny / f"results/{protocol}/splits/splits.csv")
        removed = pd.read_csv(tiny / f"results/{protocol}/splits/removed.csv")
        assert len(kept) + len(removed) == len(images), protocol
        assert set(kept["id"]).isdisjoint(removed["id"])


def test_evaluation_json_invariants(tiny):
    for arch in ("MobileNet", "DenseNet121"):
        result = load(tiny / f"results/patient/eval/{arch}/seed0.json")
        test = result["test"]
        cm = test["confusion_matrix"]
        assert cm["tp"] + cm["fn"] == test["n_positive"]
        assert cm["tn"] + cm["fp"] == test["n_negative"]
        assert test["n_positive"] + test["n_negative"] == test["n"]
        for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
            value, ci = test[key]["value"], test[key]["ci95"]
            if value is not None:
                assert ci[0] <= value <= ci[1], key
        auc = test["roc_auc"]["value"]
        assert auc is None or 0 <= auc <= 1
        assert result["weights"].startswith("none")
        fpr = result["external"]["nih"]["false_positive_rate"]
        assert fpr["n"] > 0 and fpr["ci95"][0] <= fpr["value"] <= fpr["ci95"][1]
        # The later snapshot's new patients with the NIH adults: an external set of both
        # classes, with the test split's metrics and intervals.
        temporal = result["external"]["temporal"]
        later = result["external"]["covid_later"]
        assert (temporal["classes"], later["classes"]) == ("both", "positive")
        assert temporal["n"] == later["n"] + result["external"]["nih"]["n"]
        for key in ("accuracy", "sensitivity", "specificity", "roc_auc"):
            value, ci = temporal["metrics"][key]["value"], temporal["metrics"][key]["ci95"]
            assert ci[0] <= value <= ci[1], key
        predictions = pd.read_csv(tiny / f"results/patient/eval/{arch}/seed0.predictions.csv")
        assert (predictions["split"] == "test").sum() == test["n"]


def test_positive_control_flags_the_confound(tiny):
    audit = load(tiny / "results/audit/leakage.json")
    verdicts = {v["check"]: v["verdict"] for v in audit["verdicts"]}
    assert verdicts["patient overlap between splits"] == "pass"
    assert verdicts["trivial-feature probe"] == "flag"
    assert verdicts["border-only probe"] == "flag"


def test_negative_control_does_not_flag(tmp_path):
    run_workflow(tmp_path, "tiny.yaml", "no_confound.yaml", targets=("results/audit/leakage.json",))
    audit = load(tmp_path / "results/audit/leakage.json")
    verdicts = {v["check"]: v["verdict"] for v in audit["verdicts"]}
    assert verdicts["trivial-feature probe"] != "flag", audit["trivial_feature_probe"]["auc"]
    assert verdicts["border-only probe"] != "flag", audit["border_probe"]["auc"]


# --------------------------------------------------------------------------- saliency
# Like the audit's: a positive control (the confound on: the healthy images carry a marker in
# the top-left corner, and the maps must find it there), a negative control (confound 0: they
# must not) and the pointing game against the opacities the generator planted.
SALIENCY = "results/patient/eval/DenseNet121/seed0.saliency.json"


def healthy_corner_share(statistics: dict, method: str) -> tuple[dict, float]:
    """Mean top-left mass share of the healthy test images, with its interval, and the
    share of area the box covers (what an uninformative map gives)."""
    groups = statistics["summary"][method]["groups"]
    healthy = next(g for g in groups if (g["by"], g["value"]) == ("class", "normal"))
    return healthy["shares"]["top_left"], statistics["regions"]["area_share"]["top_left"]


def test_saliency_positive_control_finds_the_marker(tiny):
    statistics = load(tiny / SALIENCY)
    share, area = healthy_corner_share(statistics, "occlusion")
    # Occlusion: well above the area share, the interval's lower bound too.
    assert share["mean"] > 3 * area and share["ci95"][0] > area, (share, area)
    # Every test and external image is mapped (none is above saliency.external_per_source),
    # and the maps are saved beside the predictions.
    predictions = pd.read_csv(tiny / SALIENCY.replace(".saliency.json", ".predictions.csv"))
    assert [r["id"] for r in statistics["images"]] == list(predictions["id"])
    assert statistics["selection"]["left_out"] == 0
    with np.load(tiny / SALIENCY.replace(".json", ".npz")) as maps:
        assert maps["ids"].tolist() == list(predictions["id"])
        assert maps["gradcam"].shape == maps["occlusion"].shape == (len(predictions), 64, 64)


LUNGS = SALIENCY.replace(".saliency.json", ".lungs.json")
SEVERITY = "results/patient/eval/severity.json"


@pytest.fixture(scope="module")
def unconfounded_run(tmp_path_factory):
    """confound 0 with a strong disease signal (tests/configs/saliency.yaml): DenseNet121 on
    the primary protocol only, up to its saliency maps and the scores against severity."""
    workdir = tmp_path_factory.mktemp("unconfounded")
    run_workflow(
        workdir, "tiny.yaml", "no_confound.yaml", "saliency.yaml",
        targets=(SALIENCY, SEVERITY),
    )  # fmt: skip
    return workdir


@pytest.fixture(scope="module")
def unconfounded(unconfounded_run):
    return load(unconfounded_run / SALIENCY)


def test_saliency_negative_control_does_not_find_a_marker(unconfounded):
    share, area = healthy_corner_share(unconfounded, "occlusion")
    assert share["ci95"][0] <= area, (share, area)


def test_pointing_game_beats_a_random_point(unconfounded):
    """Measured here (19 TP images): occlusion 9/19 (47%, 95% CI 27-68%), Grad-CAM on the
    8x8 block 4/19 (21%, 9-43%), a random point 10%."""
    occlusion = unconfounded["summary"]["occlusion"]["pointing_game"]
    gradcam = unconfounded["summary"]["gradcam"]["pointing_game"]
    tp = sum(r["outcome"] == "TP" and bool(r["truth"].get("opacity"))
             for r in unconfounded["images"])  # fmt: skip
    assert occlusion["n"] == gradcam["n"] == tp >= 10
    assert occlusion["ci95"][0] > occlusion["random_point_rate"], occlusion
    assert gradcam["value"] > gradcam["random_point_rate"], gradcam


# ------------------------------------------------------------------ annotations
# The generator writes the collection's three annotation files (lung boxes, lung masks, severity
# scores) with a few bad entries. Controls: with the disease signal and no confound the maps
# put more attribution inside the lungs than their area, and the scores rise with severity;
# with the confound alone (no disease signal), the correlation's interval covers 0.


def test_annotations_are_accounted_for_and_bad_entries_logged(tiny):
    summary = load(tiny / "results/curated/annotations/summary.json")
    exclusions = pd.read_csv(tiny / "results/curated/annotations/exclusions.csv")
    table = pd.read_csv(tiny / "results/curated/annotations/images.csv")
    assert summary["configured"] and summary["excluded"] == len(exclusions) > 0
    for part in (
        summary["files"]["masks"],
        summary["files"]["severity"],
        summary["files"]["boxes"]["images"],
        summary["files"]["boxes"]["annotations"],
    ):
        assert part["used"] + part["logged"] == part["total"] > 0, part  # fmt: skip
    # One of each class of planted problem is logged with its reason.
    classes = {reason.split(":")[0] for reason in exclusions["reason"]}
    assert {"no curated image", "named twice", "malformed", "box outside image",
            "size mismatch"} <= classes, classes  # fmt: skip
    assert set(table["source"]) == {"covid", "covid_later"}
    with np.load(tiny / "results/curated/annotations/lungs.npz") as lungs:
        assert lungs["masks"].shape[1:] == (64, 64)
        assert set(lungs["ids"].tolist()) == set(table.loc[table["region"].notna(), "id"])


def test_lung_attention_randomisation_and_severity_are_reported(tiny):
    lungs = load(tiny / LUNGS)
    assert lungs["images"] > 0
    for method in ("gradcam", "occlusion"):
        assert lungs["methods"][method]["verdict"] in (
            "attention on the lungs", "outside the lungs", "no clear preference"
        )  # fmt: skip
    randomised = load(tiny / SALIENCY.replace(".saliency.json", ".randomisation.json"))
    assert randomised["sample"]["images"] == 20
    assert all(m["images"] + m["constant"] == 20 for m in randomised["methods"].values())
    severity = load(tiny / SEVERITY)
    assert set(severity["architectures"]) == {"MobileNet", "DenseNet121"}
    html = (tiny / "results/report.html").read_text()
    for anchor in (
        'id="annotations"',
        'id="lungs-DenseNet121"',
        'id="randomisation-MobileNet"',
        'id="severity"',
    ):
        assert anchor in html, anchor  # fmt: skip


def test_lung_control_attention_rises_above_the_lungs_area(unconfounded_run):
    """Measured here (27 images with a lung region): occlusion 34% of the attribution inside
    the lungs against 17% of the area (excess 95% CI 11-24 points); Grad-CAM 23%."""
    overall = load(unconfounded_run / LUNGS)["methods"]["occlusion"]["groups"][0]
    assert overall["by"] == "all annotated images"
    assert overall["excess"]["ci95"][0] > 0, overall
    assert overall["share"]["mean"] > overall["area"]["mean"]


def test_severity_control_scores_follow_the_disease(unconfounded_run):
    """Measured here (24 scored images of 15 patients): rho 0.50 (0.16 to 0.79) against the
    extent, 0.49 (0.21 to 0.75) against the opacity."""
    entry = load(unconfounded_run / SEVERITY)["architectures"]["DenseNet121"]
    together = entry["subsets"]["together"]
    assert any(together[s]["ci95"][0] > 0 for s in ("geographic_mean", "opacity_mean")), together
    assert entry["verdict"] == "follows the disease"


def test_severity_negative_control_covers_zero(tmp_path):
    """The confound alone: no disease signal in the pixels, the severity scores still drawn.
    Measured here: rho 0.07 (-0.39 to 0.50) and -0.02 (-0.41 to 0.42)."""
    run_workflow(tmp_path, "tiny.yaml", "saliency.yaml", "no_signal.yaml", targets=(SEVERITY,))
    together = load(tmp_path / SEVERITY)["architectures"]["DenseNet121"]["subsets"]["together"]
    for score in ("geographic_mean", "opacity_mean"):
        low, high = together[score]["ci95"]
        assert low <= 0 <= high, (score, together[score])


# ------------------------------------------------------------------ verify


def test_verify_passes_on_the_run_and_fails_after_a_changed_setting(tiny, tmp_path):
    """The expected file written from a run verifies that run (every tolerance 0); a copy of
    the run redone with another decision threshold no longer verifies, naming what moved."""
    expected = tmp_path / "expected.json"

    def verify(workdir, *args):
        return subprocess.run(
            [sys.executable, str(REPO / "scripts/verify.py"), "--measured",
             str(workdir / "results/measured.json"), "--expected", str(expected), *args],
            capture_output=True, text=True,
        )  # fmt: skip

    assert verify(tiny, "--write").returncode == 0
    same = verify(tiny, "--context", "same_machine")
    assert same.returncode == 0, same.stdout
    copy = tmp_path / "changed"
    shutil.copytree(tiny, copy, symlinks=True)  # copy2 keeps the modification times
    change = tmp_path / "threshold.yaml"
    change.write_text("evaluation: {threshold: 0.7}\n")
    run_workflow(copy, "tiny.yaml", str(change), targets=("results/measured.json",))
    changed = verify(copy, "--context", "other_cpu")
    assert changed.returncode == 1, changed.stdout
    assert "differs" in changed.stdout and ".test.accuracy" in changed.stdout


DETERMINISTIC = [
    "results/curated/images.csv",
    "results/curated/exclusions.csv",
    "results/curated/flow.json",
    "results/patient/splits/splits.csv",
    "results/patient/splits/summary.json",
    "results/article/splits/splits.csv",
    "results/no_marks/splits/removed.csv",
    "results/shards/manifest.json",
    "results/features/DenseNet121/features.npy",
    "results/patient/eval/MobileNet/seed0.json",
    "results/patient/eval/DenseNet121/seed0.json",
    "results/patient/eval/DenseNet121/seed0.predictions.csv",
    "results/article/eval/DenseNet121/seed0.json",
    "results/learning_curve/eval/DenseNet121/f050-seed0.json",
    "results/protocols/comparison.json",
    "results/audit/leakage.json",
    SALIENCY,
    SALIENCY.replace(".json", ".npz"),
    "results/curated/annotations/images.csv",
    "results/curated/annotations/lungs.npz",
    "results/curated/annotations/exclusions.csv",
    LUNGS,
    SALIENCY.replace(".saliency.json", ".randomisation.json"),
    SEVERITY,
]


def test_report_is_written_with_every_section(tiny):
    html = (tiny / "results/report.html").read_text()
    for section in ("summary", "reproduction", "data", "training", "results", "learning-curve",
                    "marks", "saliency", "caveats", "reproducibility", "checklist"):  # fmt: skip
        assert f'id="{section}"' in html, section
    assert "<script" not in html
    for arch in ("MobileNet", "DenseNet121"):
        assert f'alt="saliency overlays of {arch}"' in html, arch
    for protocol in PROTOCOLS:
        assert f"<td>{protocol}" in html, protocol


def test_a_second_clean_run_killed_midway_then_rerun_gives_the_first_runs_bytes(tiny, tmp_path):
    """A second run from an empty folder, SIGKILLed in the middle, then rerun: nothing
    half-written is taken as done, and every deterministic output and shard has the bytes of
    the first run (`tiny`). Every output of the second run comes from a process of its own,
    before or after the kill, so this is also the check that two clean runs are byte-identical
    (one workflow run for both)."""
    import os
    import signal
    import subprocess
    import time

    from conftest import REPO
    from workflow import SNAKEMAKE

    command = [
        str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
        "--cores", "2", "--configfile", str(REPO / "config.yaml"),
        str(REPO / "tests/configs/tiny.yaml"), "--", *DETERMINISTIC,
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    # A train_models job has fitted a head and has more to fit (every protocol's runs and
    # repeats): kill it there.
    while not list((tmp_path / "results").glob("*/models/*/*/history.csv")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: a power cut, an OOM kill
    proc.wait()
    # A killed Snakemake leaves its lock; it tells the user to unlock, as we do here.
    run_workflow(tmp_path, "tiny.yaml", extra=("--unlock",))
    run_workflow(tmp_path, "tiny.yaml", targets=tuple(DETERMINISTIC), extra=("--rerun-incomplete",))
    for rel in DETERMINISTIC:
        assert sha256_file(tiny / rel) == sha256_file(tmp_path / rel), rel
    shards = sorted((tiny / "results/shards").glob("*.tfrecord"))
    assert shards
    for shard in shards:
        assert sha256_file(shard) == sha256_file(tmp_path / "results/shards" / shard.name)


def test_every_protocol_ran_on_the_shared_features(tiny):
    """One base forward pass per architecture; every protocol's runs are heads on it."""
    for arch in ("MobileNet", "DenseNet121"):
        features = load(tiny / f"results/features/{arch}/summary.json")
        assert features["forward_passes_per_image"] == 1
        assert features["saved_base_check_images"] == 4
        for protocol, runs in (("article", ["seed0"]), ("patient", ["seed0"]),
                               ("no_marks", ["seed0"]),
                               ("learning_curve", ["f050-seed0", "f100-seed0"])):  # fmt: skip
            for run in runs:
                summary = load(tiny / f"results/{protocol}/models/{arch}/{run}/summary.json")
                assert summary["path"] == "stored-features", (protocol, run)
                result = load(tiny / f"results/{protocol}/eval/{arch}/{run}.json")
                assert result["prediction"].startswith("head on the stored features")
    curve = load(tiny / "results/learning_curve/eval/summary.json")["learning_curve"]
    patients = {(r["architecture"], r["train_fraction"]): r["train_patients"] for r in curve}
    assert patients[("DenseNet121", 0.5)] < patients[("DenseNet121", 1.0)]
    no_marks = pd.read_csv(tiny / "results/no_marks/splits/removed.csv")
    assert len(no_marks) > 0 and set(no_marks["reason"]) == {"coloured annotation mark"}
    comparison = load(tiny / "results/protocols/comparison.json")
    leak = comparison["split_leakage"]
    assert leak["article"]["test_images_whose_patient_is_in_train"] > 0
    assert leak["patient"]["test_images_whose_patient_is_in_train"] == 0


def test_image_level_split_is_optimistic_on_average_over_split_seeds(tmp_path):
    """Synthetic patients share their anatomy across images, as real ones do: an image-level
    split then tests on patients the model has seen, which flatters it. Measured on the tiny
    configuration over eight repeated splits of each protocol (protocols.<name>.repeats)."""
    targets = ("results/protocols/repeats.json", "results/article/eval/DenseNet121/seed0.json")
    run_workflow(tmp_path, "tiny.yaml", "optimism.yaml", targets=targets)
    repeats = load(tmp_path / "results/protocols/repeats.json")
    entry = repeats["architectures"]["DenseNet121"]
    assert entry["paired_repeats"] == 8
    auc = entry["optimism"]["roc_auc"]
    assert len(auc["differences"]) == 8 and auc["k"] == 8
    # Measured here (the first four splits, as separate protocols before the repeats existed):
    # image-level mean AUC 0.66, patient-disjoint 0.48.
    assert auc["value"] > 0.05, auc
    assert auc["share_article_higher"] >= 0.5, auc
    # The corrected interval is wider than the naive one, and contains the mean.
    assert auc["ci95"][0] < auc["value"] < auc["ci95"][1]
    # Repeat 0 is the article protocol's own split: its AUC is the single run's.
    single = load(tmp_path / "results/article/eval/DenseNet121/seed0.json")["test"]["roc_auc"]
    assert entry["spread"]["article"]["roc_auc"]["own_split"] == pytest.approx(single["value"])
    leaked = load(tmp_path / "results/article/repeats/summary.json")["repeats"]
    assert all(r["test_images_whose_patient_is_in_train"] > 0 for r in leaked), leaked
    clean = load(tmp_path / "results/patient/repeats/summary.json")["repeats"]
    assert all(r["test_images_whose_patient_is_in_train"] == 0 for r in clean), clean


def test_the_run_crate_validates_links_each_output_to_its_job_and_is_reproducible(tiny):
    """make crate's target on the tiny run: a Provenance Run Crate that roc-validator accepts,
    whose actions runcrate reads back, with each copied file's bytes as recorded; rebuilt from
    the same run, the same bytes."""
    from crate_validation import validate
    from runcrate.report import dump_crate_actions

    run_workflow(tiny, "tiny.yaml", targets=("results/ro-crate.zip",))
    crate = tiny / "results/ro-crate.zip"
    first = crate.read_bytes()
    assert validate(crate, "provenance-run-crate-0.5", tiny / "validator-cache") == []

    unpacked = tiny / "crate"
    shutil.unpack_archive(crate, unpacked)
    graph = {e["@id"]: e for e in load(unpacked / "ro-crate-metadata.json")["@graph"]}
    for path in ("results/report.html", "results/provenance.json", "results/measured.json"):
        assert sha256_file(unpacked / path) == sha256_file(tiny / path), path
    evaluation = "results/patient/eval/MobileNet/seed0.json"
    assert graph[evaluation]["sha256"] == sha256_file(tiny / evaluation)
    made_by: dict[str, set] = {}
    for action in graph.values():
        if action.get("@type") == "CreateAction":
            result = action.get("result") or []
            for ref in result if isinstance(result, list) else [result]:
                made_by.setdefault(ref["@id"], set()).add(action["@id"])
    assert made_by[evaluation] == {"#job-evaluate_models[arch=MobileNet]"}
    # The report: by its job, and as the result of the whole run.
    assert made_by["results/report.html"] == {"#job-render_report", "#run"}
    assert graph["#run"]["instrument"] == {"@id": "Snakefile"}
    # Files no job copied into the crate (models, shards) are named, with their SHA-256.
    model = next(i for i in graph if i.startswith("#results/patient/models/MobileNet/"))
    assert graph[model]["sha256"]

    lines = io.StringIO()
    dump_crate_actions(str(unpacked), f=lines)
    assert "action: #job-render_report" in lines.getvalue()
    assert "results/report.html" in lines.getvalue()

    run_workflow(tiny, "tiny.yaml", targets=("results/ro-crate.zip",),
                 extra=("--forcerun", "package_run_crate"))  # fmt: skip
    assert crate.read_bytes() == first
