"""The article's data (../shared/data): exact counts of curation, splits and shards, and the
article configuration end to end at a small image size. Skipped when the data are absent."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from conftest import article_sources, curation_rules
from cxr.curate import curate
from cxr.shards import write_shards
from cxr.split import split_patients
from workflow import run_workflow

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def curated(shared_data):
    return curate(article_sources(shared_data), curation_rules(), seed=2020)


def test_curation_counts_match_the_article(curated):
    images, exclusions, flow = curated
    covid = images[images["source"] == "covid"]
    # metadata.csv has 69 COVID-19 PA X-ray rows (46 patients); one names a file that is not in
    # the snapshot (covid-19-pneumonia-14-PA.png), which leaves the article's 68 images.
    assert len(covid) == 68 and covid["patient"].nunique() == 45  # the lost file was a 46th
    missing = exclusions[exclusions["reason"] == "file missing"]
    assert "images/covid-19-pneumonia-14-PA.png" in set(missing["file"])
    # 118 Kermany files, two of them byte-identical copies: 116 unique, 70 sampled as the article.
    kermany = images[images["source"] == "kermany"]
    assert len(kermany) == 70
    dupes = exclusions[
        (exclusions["source"] == "kermany") & (exclusions["reason"] == "duplicate image")
    ]
    assert sorted(dupes["file"]) == ["IM-0019-0001 (1).jpeg", "NORMAL2-IM-1427-0001 (1).jpeg"]
    # The sample leaves IM-0019-0001.jpeg out: its copy's log says so instead of naming an image
    # as if it were in the data.
    assert dupes.set_index("file").loc["IM-0019-0001 (1).jpeg", "detail"] == (
        "same pixels as kermany/IM-0019-0001.jpeg, itself excluded: not sampled (70 of 116, "
        "seed 2020)"
    )
    assert (exclusions["reason"] == "not sampled").sum() == 46
    # 146 metadata rows + 4 orphan image files + UPSTREAM_README.md + 118 + 121 NIH files.
    assert flow["total"] == 146 + 4 + 1 + 118 + 121
    assert len(images) + len(exclusions) == flow["total"]
    assert (exclusions["reason"] == "no metadata row").sum() == 4
    assert (images["source"] == "nih").sum() == 121


def test_splits_and_shards_on_real_data(curated, tmp_path):
    images = curated[0]
    splits = split_patients(images, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=2020)
    assert (splits.groupby("patient")["split"].nunique() == 1).all()
    trained = splits[splits["split"] != "external"]
    assert len(trained) == 138
    manifest = write_shards(images, tmp_path, image_size=64, count=2, max_pixels=50_000_000)
    assert sum(s["count"] for s in manifest["shards"]) == len(images) == 259


@pytest.mark.slow
def test_article_configuration_end_to_end(shared_data, tmp_path):
    """The article's protocol and the patient-disjoint one on the real data at 64 px, with the
    temporal validation's later snapshot a copy of the March one: so every later image is out,
    for a stated reason, and the report says that the later set is empty."""
    later = tmp_path / "covid-chestxray-dataset-copy"
    shutil.copytree(shared_data / "covid-chestxray-dataset-2020-03-18", later)
    roots = {k: v["root"] for k, v in article_sources(shared_data).items()}
    config = {
        "dataset": "temporal_local",
        "datasets": {"temporal_local": {
            "sources": {k: {"root": v} for k, v in (roots | {"covid_later": str(later)}).items()},
            # The later snapshot's annotations (584034a) are not in ../shared/data.
            "annotations": None,
            "overrides": {"shards": {"image_size": 64}, "training": {
                "image_size": 64, "epochs": 5, "seeds": [0], "architectures": ["DenseNet121"]}},
        }},
        "protocols": {"run": ["article", "patient"], "primary": "patient"},
        "evaluation": {"bootstrap": 200},
        # 4x4 occlusion patches instead of 8x8: the section is under test, not the maps' detail.
        "saliency": {"occlusion_patch": 0.25, "occlusion_stride": 0.25},
    }  # fmt: skip
    path = tmp_path / "article_small.yaml"
    path.write_text(yaml.safe_dump(config))
    run_workflow(tmp_path / "run", str(path))
    results = tmp_path / "run/results"
    result = json.loads((results / "patient/eval/DenseNet121/seed0.json").read_text())
    test = result["test"]
    cm = test["confusion_matrix"]
    assert cm["tp"] + cm["fn"] + cm["tn"] + cm["fp"] == test["n"] > 0
    for key in ("accuracy", "sensitivity", "specificity"):
        lo, hi = test[key]["ci95"]
        assert lo <= test[key]["value"] <= hi
    assert 0 <= test["roc_auc"]["value"] <= 1
    assert result["external"]["nih"]["false_positive_rate"]["n"] == 121
    # The later snapshot, a copy of the training one: nothing is new, and each row says why.
    flow = json.loads((results / "curated/flow.json").read_text())["sources"]["covid_later"]
    assert (flow["included"], flow["excluded"]) == (0, flow["total"])
    exclusions = pd.read_csv(results / "curated/exclusions.csv")
    later = exclusions[exclusions["source"] == "covid_later"]
    assert (later["reason"] == "image already in training data").sum() == 68
    assert later["reason"].notna().all() and len(later) == flow["total"]
    assert result["external"]["covid_later"]["n"] == 0
    assert result["external"]["temporal"]["classes"] == "negative"  # NIH alone is left
    held_out = json.loads((results / "protocols/generalisation.json").read_text())
    rows = {r["set"]: r for r in held_out["architectures"]["DenseNet121"]["rows"]}
    assert rows["covid_later"]["note"].startswith("no images: curation excluded every image")
    audit = json.loads((results / "audit/leakage.json").read_text())
    verdicts = {v["check"]: v["verdict"] for v in audit["verdicts"]}
    # Kermany children's JPEGs vs many-sourced adult images: the file properties alone give
    # the class away.
    assert verdicts["trivial-feature probe"] == "flag"
    assert verdicts["label vs source"] == "flag"
    # Both protocols split the same 138 images (68 COVID-19 + 70 Kermany) and test on the
    # same 121 NIH adults; only the patient protocol keeps patients in one split.
    for protocol in ("article", "patient"):
        splits = pd.read_csv(results / f"{protocol}/splits/splits.csv")
        assert (splits["split"] != "external").sum() == 138
        assert (splits["split"] == "external").sum() == 121
    patient = pd.read_csv(results / "patient/splits/splits.csv")
    assert (patient.groupby("patient")["split"].nunique() == 1).all()
    comparison = json.loads((results / "protocols/comparison.json").read_text())
    leak = comparison["split_leakage"]["article"]
    assert leak["test_images"] == round(0.2 * 138)  # exact image-level fractions
    assert leak["test_images_whose_patient_is_in_train"] > 0  # 68 images of 45 patients
    entry = comparison["architectures"]["DenseNet121"]
    assert entry["article"]["accuracy"]["value"] is not None
    assert entry["optimism"]["accuracy"]["ci95"] is not None
    page = (results / "report.html").read_text()
    start = page.index('<section id="reproduction">')
    section = page[start : page.index("</section>", start)]
    acc = entry["article"]["accuracy"]
    assert f"{acc['value']:.2f} ({acc['ci95'][0]:.2f}-{acc['ci95'][1]:.2f})" in section
    assert f"{leak['test_images_whose_patient_is_in_train']} of {leak['test_images']}" in section
    text = " ".join(page.split())
    assert "The external set covid_later (covid_later) is empty: curation excluded every" in text
    assert "The external source covid_later adds no image: none of its" in text
    # Where the model looks: every test image and 15 of NIH's 121 (the article datasets'
    # saliency.external_per_source); no ground truth on real data, so no pointing game; the
    # report shows the section with its overlays.
    saliency = json.loads((results / "patient/eval/DenseNet121/seed0.saliency.json").read_text())
    assert len(saliency["images"]) == test["n"] + 15
    nih = next(g for g in saliency["selection"]["groups"] if g["source"] == "nih")
    assert (nih["images"], nih["mapped"], nih["left_out"]) == (121, 15, 106)
    assert saliency["ground_truth"] is None
    # The article datasets' 20 repeated splits of both protocols, paired (issue 21).
    repeats = json.loads((results / "protocols/repeats.json").read_text())
    assert repeats["architectures"]["DenseNet121"]["paired_repeats"] == 20
    assert "Over repeated splits" in text
    assert all(m["pointing_game"] is None for m in saliency["summary"].values())
    assert saliency["summary"]["occlusion"]["verdict"]["verdict"] in ("flag", "warn", "pass")
    assert 'alt="saliency overlays of DenseNet121"' in page
    assert "Pointing game: not applicable" in page
