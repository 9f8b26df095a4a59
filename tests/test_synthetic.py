"""The synthetic data set: real layout, planted faults, determinism, patients' shared anatomy,
coloured marks, and the source confound as a positive/negative control for the leakage audit."""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxr.errors import ConfigError, DataError
from cxr.images import to_grayscale_array
from cxr.synthetic import (
    BORDER,
    GROUND_TRUTH_FILE,
    Anatomy,
    generate_synthetic,
    render_chest,
)

# First line of metadata.csv in ieee8023/covid-chestxray-dataset at 2020-03-18.
REAL_HEADER = (
    "Patientid,offset,sex,age,finding,survival,view,modality,date,location,filename,doi, url,"
    "license,clinical notes,other notes,"
)
KERMANY_NAME = re.compile(r"(NORMAL2-)?(IM-\d{4})-\d{4}(-\d{4})?( \(1\))?\.jpeg")
NIH_NAME = re.compile(r"(\d{8})_\d{3}\.png")


@pytest.fixture(scope="module")
def generate(tmp_path_factory):
    """Generate once per argument set and module; returns (root, summary)."""
    cache: dict = {}

    def make(**kwargs):
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            root = tmp_path_factory.mktemp("synthetic")
            cache[key] = (root, generate_synthetic(root, **kwargs))
        return cache[key]

    return make


def read_rows(root: Path) -> list[dict]:
    with open(root / "covid-chestxray-dataset" / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
    except OSError:
        return False
    return True


def test_layout_matches_the_real_sources(generate):
    root, summary = generate(seed=0)
    disease = root / "covid-chestxray-dataset"
    lines = (disease / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == REAL_HEADER
    rows = read_rows(root)
    assert all(line.endswith(",") for line in lines[1:])
    assert all(row[""] == "" for row in rows)  # the unnamed trailing column stays empty
    assert len(rows) == summary["disease"]["rows"]
    assert len(list((disease / "images").iterdir())) == summary["disease"]["files"] == len(rows) - 1
    assert {r["finding"] for r in rows} == {"COVID-19", "SARS", "Streptococcus", "ARDS"}
    covid_views = {
        r["view"] for r in rows if r["finding"] == "COVID-19" and r["modality"] == "X-ray"
    }
    assert covid_views == {"PA", "AP", "AP Supine", "L"}
    assert all(r["view"] == "Axial" for r in rows if r["modality"] == "CT")
    assert 1 <= summary["disease"]["rows_by_modality"]["CT"] <= 5
    assert all(r["view"] == "PA" for r in rows if r["finding"] != "COVID-19")
    per_patient = np.unique(
        [r["Patientid"] for r in rows if r["modality"] == "X-ray"], return_counts=True
    )
    assert per_patient[1].max() >= 2

    healthy = sorted(p.name for p in (root / "kermany-normal").iterdir())
    assert len(healthy) == summary["healthy"]["files"]
    matches = [KERMANY_NAME.fullmatch(name) for name in healthy]
    assert all(matches), [n for n, m in zip(healthy, matches, strict=True) if not m]
    keys = [m.group(2) for m in matches if not m.group(4)]
    assert len(set(keys)) == summary["healthy"]["patients"] == 45
    assert any(name.startswith("NORMAL2-") for name in healthy)
    assert max(keys.count(k) for k in keys) == 2

    external = sorted(p.name for p in (root / "nih-nofinding").iterdir())
    ids = [NIH_NAME.fullmatch(name).group(1) for name in external]
    assert len(set(ids)) == summary["external"]["patients"] == 12
    assert max(ids.count(i) for i in ids) >= 2
    for name in external[:3]:
        with Image.open(root / "nih-nofinding" / name) as img:
            assert (img.format, img.mode) == ("PNG", "L")


@pytest.mark.realdata
def test_header_matches_the_real_snapshot(generate, shared_data):
    real = shared_data / "covid-chestxray-dataset-2020-03-18" / "metadata.csv"
    root, _ = generate(seed=0)
    ours = root / "covid-chestxray-dataset" / "metadata.csv"
    with open(real, encoding="utf-8") as a, open(ours, encoding="utf-8") as b:
        assert a.readline() == b.readline() == REAL_HEADER + "\n"


def test_planted_faults(generate):
    root, summary = generate(seed=0)
    faults = summary["disease"]["faults"]
    images = root / "covid-chestxray-dataset" / "images"
    rows = read_rows(root)
    by_name = {r["filename"]: r for r in rows}

    missing = [r["filename"] for r in rows if not (images / r["filename"]).exists()]
    assert missing == [faults["missing_file"]]
    undecodable = [p.name for p in sorted(images.iterdir()) if not decodes(p)]
    assert undecodable == [faults["corrupt_file"]]
    corrupt = by_name[faults["corrupt_file"]]
    assert (corrupt["finding"], corrupt["view"], corrupt["modality"]) == ("COVID-19", "PA", "X-ray")

    digests: dict[str, list[str]] = {}
    for path in sorted(images.iterdir()):
        digests.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), []).append(path.name)
    assert [sorted(names) for names in digests.values() if len(names) > 1] == [
        sorted(faults["duplicate_pair"])
    ]
    first, second = (by_name[name] for name in faults["duplicate_pair"])
    assert first["Patientid"] != second["Patientid"]
    for row in (first, second):
        assert (row["finding"], row["view"], row["modality"]) == ("COVID-19", "PA", "X-ray")

    scripted = [r["filename"] for r in rows if "<script>alert(1)</script>" in r["clinical notes"]]
    assert scripted == [faults["script_note_file"]]
    spaced = [r["filename"] for r in rows if " " in r["filename"]]
    assert spaced == [faults["space_in_name_file"]]
    for mode, name in faults["unusual_modes"].items():
        with Image.open(images / name) as img:
            assert img.mode == mode

    pair = summary["healthy"]["faults"]["duplicate_pair"]
    assert pair[1] == pair[0].replace(".jpeg", " (1).jpeg")
    healthy = root / "kermany-normal"
    assert (healthy / pair[0]).read_bytes() == (healthy / pair[1]).read_bytes()


def tree_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_arguments_give_identical_bytes(generate, tmp_path):
    root, summary = generate(seed=0)
    again = generate_synthetic(tmp_path / "again", seed=0)
    assert again == summary
    assert tree_digests(tmp_path / "again") == tree_digests(root)
    other, _ = generate(seed=1)
    assert tree_digests(other) != tree_digests(root)


def test_refuses_bad_arguments_and_non_empty_output(tmp_path):
    with pytest.raises(ConfigError, match="confound"):
        generate_synthetic(tmp_path, seed=0, confound=1.5)
    with pytest.raises(ConfigError, match="n_disease_patients"):
        generate_synthetic(tmp_path, seed=0, n_disease_patients=3)
    for marks in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="marks"):
            generate_synthetic(tmp_path, seed=0, marks=marks)
    (tmp_path / "kermany-normal").mkdir()
    (tmp_path / "kermany-normal" / "old.jpeg").write_bytes(b"x")
    with pytest.raises(DataError, match="kermany-normal"):
        generate_synthetic(tmp_path, seed=0)


def test_signal_stays_in_the_centre_and_marker_in_the_corner():
    for seed in range(4):
        plain = render_chest(np.random.default_rng(seed), 150, 140).astype(int)
        sick = render_chest(np.random.default_rng(seed), 150, 140, signal=1.0).astype(int)
        marked = render_chest(np.random.default_rng(seed), 150, 140, marker=1.0).astype(int)
        centre = np.zeros(plain.shape, dtype=bool)
        centre[
            round(140 * BORDER) : -round(140 * BORDER), round(150 * BORDER) : -round(150 * BORDER)
        ] = True
        corner = np.zeros(plain.shape, dtype=bool)
        corner[: round(140 * BORDER), : round(150 * BORDER)] = True  # top-left of the strip
        # Opacities change the centre; outside it only the std-preserving rescale (<= 2 levels).
        assert np.abs(sick - plain)[centre].max() > 40
        assert np.abs(sick - plain)[~centre].max() <= 2
        assert np.abs(marked - plain)[corner].max() > 100
        assert np.abs(marked - plain)[~corner].max() == 0


def small_picture(path: Path) -> np.ndarray:
    """The image as 64x64 grayscale, so that images of different sizes compare pixel by pixel."""
    with Image.open(path) as img:
        img.load()
        small = Image.fromarray(to_grayscale_array(img)).resize((64, 64), Image.BILINEAR)
    return np.asarray(small, dtype=np.float64).ravel()


def patient_correlations(paths_by_patient: dict[str, list[Path]]) -> tuple[float, float]:
    """Mean pixel correlation of two images of one patient and of two different patients, over
    the patients with at least two images."""
    pictures = [
        (patient, small_picture(path))
        for patient, paths in paths_by_patient.items()
        if len(paths) >= 2
        for path in paths
    ]
    same, other = [], []
    for (patient_a, a), (patient_b, b) in itertools.combinations(pictures, 2):
        (same if patient_a == patient_b else other).append(np.corrcoef(a, b)[0, 1])
    return float(np.mean(same)), float(np.mean(other))


def images_by_patient(root: Path, summary: dict) -> dict[str, dict[str, list[Path]]]:
    """Each source's decodable X-ray images by patient, planted copies left out (a copy is
    another patient's picture, or the same file twice)."""
    faults = summary["disease"]["faults"]
    planted = {faults["missing_file"], faults["corrupt_file"], faults["duplicate_pair"][1]}
    images = root / "covid-chestxray-dataset" / "images"
    disease: dict[str, list[Path]] = {}
    for row in read_rows(root):
        if row["modality"] == "X-ray" and row["filename"] not in planted:
            disease.setdefault(row["Patientid"], []).append(images / row["filename"])
    healthy: dict[str, list[Path]] = {}
    for path in sorted((root / "kermany-normal").iterdir()):
        match = KERMANY_NAME.fullmatch(path.name)
        if not match.group(4):
            healthy.setdefault(match.group(2), []).append(path)
    external: dict[str, list[Path]] = {}
    for path in sorted((root / "nih-nofinding").iterdir()):
        external.setdefault(NIH_NAME.fullmatch(path.name).group(1), []).append(path)
    return {"disease": disease, "healthy": healthy, "external": external}


def test_images_of_one_patient_share_their_anatomy(generate):
    # Measured at seeds 0 and 1, same patient against different patients: disease 0.976 vs
    # 0.898 and 0.977 vs 0.914, healthy 0.989 vs 0.917 and 0.991 vs 0.915, external 0.996 vs
    # 0.907 and 0.998 vs 0.924. Before patients had an anatomy of their own, both were 0.886-0.930
    # and equal within 0.02: an image-level split could not leak a patient.
    for seed in (0, 1):
        root, summary = generate(seed=seed)
        for source, paths in images_by_patient(root, summary).items():
            same, other = patient_correlations(paths)
            message = f"seed {seed}, {source}: same patient {same:.3f}, different {other:.3f}"
            # Two images of one patient differ at most half as much as two patients' do.
            assert 1.0 - same < 0.5 * (1.0 - other), message


def test_render_chest_varies_pose_not_anatomy():
    anatomy = Anatomy.draw(np.random.default_rng(7))
    first, second = (
        render_chest(np.random.default_rng(seed), 96, 96, anatomy=anatomy).astype(float).ravel()
        for seed in (1, 2)
    )
    stranger = render_chest(np.random.default_rng(1), 96, 96).astype(float).ravel()
    assert np.corrcoef(first, second)[0, 1] > np.corrcoef(first, stranger)[0, 1]
    with pytest.raises(ValueError, match="ct"):
        render_chest(np.random.default_rng(1), 96, 96, anatomy=anatomy, ct=True)


def chroma(path: Path) -> np.ndarray:
    """max(R, G, B) - min(R, G, B) of each pixel; zero for single-channel images."""
    with Image.open(path) as img:
        img.load()
        if img.mode not in ("RGB", "RGBA", "P"):
            return np.zeros(img.size[::-1], dtype=int)
        pixels = np.asarray(img.convert("RGB"), dtype=int)
    return pixels.max(axis=-1) - pixels.min(axis=-1)


def decodable_images(root: Path) -> list[Path]:
    folders = [root / "covid-chestxray-dataset" / "images", root / "kermany-normal",
               root / "nih-nofinding"]  # fmt: skip
    return [path for folder in folders for path in sorted(folder.iterdir()) if decodes(path)]


def test_coloured_marks_only_on_the_listed_covid_images(generate):
    root, summary = generate(seed=0)
    marked = summary["disease"]["coloured_marks"]
    assert summary["parameters"]["marks"] == 0.15
    by_name = {r["filename"]: r for r in read_rows(root)}
    faults = summary["disease"]["faults"]
    planted = {faults["missing_file"], faults["corrupt_file"], *faults["duplicate_pair"],
               *faults["unusual_modes"].values()}  # fmt: skip
    assert marked == sorted(marked)
    assert marked, "no image marked at marks=0.15"
    assert not planted & set(marked)
    for name in marked:
        assert (by_name[name]["finding"], by_name[name]["modality"]) == ("COVID-19", "X-ray")
        path = root / "covid-chestxray-dataset" / "images" / name
        with Image.open(path) as img:
            assert img.mode == "RGB", name
        # A red arrow: measured 0.23-0.39% of the pixels at seeds 0 and 1.
        assert (chroma(path) >= 100).mean() >= 0.0005, name
    # Grayscale content saved as RGB, JPEG included, measured chroma 0: R = G = B decodes exactly.
    unmarked = [p for p in decodable_images(root) if p.name not in marked]
    assert max(chroma(p).max() for p in unmarked) <= 40

    plain_root, plain = generate(seed=0, marks=0.0)
    assert plain["disease"]["coloured_marks"] == []
    assert max(chroma(p).max() for p in decodable_images(plain_root)) <= 40
    # Marks come from a stream of their own: no other file changes.
    marked_digests, plain_digests = tree_digests(root), tree_digests(plain_root)
    assert marked_digests.keys() == plain_digests.keys()
    changed = {name for name, digest in marked_digests.items() if plain_digests[name] != digest}
    images_changed = changed - {GROUND_TRUTH_FILE}
    assert images_changed == {f"covid-chestxray-dataset/images/{name}" for name in marked}
    # ... and the ground truth gains exactly one arrow row per marked image.
    truth, plain_truth = (
        pd.read_csv(r / GROUND_TRUTH_FILE, keep_default_na=False) for r in (root, plain_root)
    )
    arrows = truth[truth["kind"] == "arrow"]
    assert sorted(arrows["file"]) == [f"images/{name}" for name in marked]
    assert truth[truth["kind"] != "arrow"].reset_index(drop=True).equals(plain_truth)


def test_ground_truth_locates_what_was_planted(generate):
    """Each opacity row is a bright spot of the picture, each marker the healthy source's block;
    markers only on confounded healthy images, opacities only on disease images."""
    root, summary = generate(seed=0)
    truth = pd.read_csv(root / GROUND_TRUTH_FILE, keep_default_na=False)
    assert set(truth["kind"]) == {"opacity", "marker", "arrow"}
    assert set(truth.loc[truth["kind"] == "opacity", "source_dir"]) == {"covid-chestxray-dataset"}
    markers = truth[truth["kind"] == "marker"]
    assert set(markers["source_dir"]) == {"kermany-normal"}
    assert markers["file"].nunique() == summary["healthy"]["confounded_files"] + 1  # + the copy
    assert (markers[["x1", "y1"]] < BORDER).all().all()  # inside the border strip
    assert (truth[["x0", "y0"]].to_numpy() < truth[["x1", "y1"]].to_numpy()).all()
    # A marker block is bright (0.95 of full scale) around a dark "R": its median stands out.
    for row in markers.head(5).itertuples():
        pixels = to_grayscale_array(Image.open(root / row.source_dir / row.file)).astype(float)
        h, w = pixels.shape
        block = pixels[round(row.y0 * h) + 1 : round(row.y1 * h) - 1,
                       round(row.x0 * w) + 1 : round(row.x1 * w) - 1]  # fmt: skip
        assert np.median(block) > np.median(pixels) + 60, row.file
    plain_root, _ = generate(seed=0, confound=0.0)
    plain = pd.read_csv(plain_root / GROUND_TRUTH_FILE, keep_default_na=False)
    assert "marker" not in set(plain["kind"])


def trivial_features(path: Path) -> list[float]:
    """Features that carry no pathology: size, format, global and border intensity."""
    with Image.open(path) as img:
        is_jpeg = img.format == "JPEG"
        img.load()
        pixels = to_grayscale_array(img).astype(np.float64)
    height, width = pixels.shape
    border = np.ones(pixels.shape, dtype=bool)
    border[
        round(height / 8) : height - round(height / 8), round(width / 8) : width - round(width / 8)
    ] = False
    return [width, height, width / height, is_jpeg, pixels.mean(), pixels.std(),
            pixels[border].mean(), pixels[border].std()]  # fmt: skip


def lung_histogram(path: Path) -> np.ndarray:
    """Histogram of the central region relative to the mediastinum: sees local opacities."""
    with Image.open(path) as img:
        img.load()
        small = Image.fromarray(to_grayscale_array(img)).resize((64, 64), Image.BILINEAR)
    pixels = np.asarray(small, dtype=np.float64)
    centre = (pixels[16:48, 12:52] - np.median(pixels[16:48, 28:36])) / (pixels.std() + 1e-6)
    return np.histogram(centre, bins=12, range=(-3, 1))[0] / centre.size


def grouped_cv_auc(root: Path, features) -> float:
    """Patient-grouped 5-fold CV AUC of a logistic regression, COVID-19 X-rays vs Kermany."""
    x, y, groups = [], [], []
    images = root / "covid-chestxray-dataset" / "images"
    for row in read_rows(root):
        path = images / row["filename"]
        if row["finding"] != "COVID-19" or row["modality"] != "X-ray" or not path.exists():
            continue
        if decodes(path):
            x.append(features(path))
            y.append(1)
            groups.append(f"covid-{row['Patientid']}")
    for path in sorted((root / "kermany-normal").iterdir()):
        x.append(features(path))
        y.append(0)
        groups.append(KERMANY_NAME.fullmatch(path.name).group(2))
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
    scores = np.zeros(len(y))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        scores[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


def test_trivial_features_reveal_the_confound_only_when_planted(generate):
    positive = [grouped_cv_auc(generate(seed=s)[0], trivial_features) for s in (0, 1)]
    negative = [grouped_cv_auc(generate(seed=s, confound=0.0)[0], trivial_features) for s in (0, 1)]
    confounded = generate(seed=0)[1]["healthy"]
    assert confounded["confounded_files"] == confounded["files"] - 1  # all but the byte copy
    assert generate(seed=0, confound=0.0)[1]["healthy"]["confounded_files"] == 0
    assert min(positive) > 0.9, positive
    # Chance is 0.5; two seeds averaged because ~110 images leave the AUC noisy (sd ~0.05).
    assert np.mean(negative) < 0.7, negative


def test_signal_is_learnable_without_the_confound(generate):
    with_signal = [
        grouped_cv_auc(generate(seed=s, confound=0.0)[0], lung_histogram) for s in (0, 1)
    ]
    without = grouped_cv_auc(generate(seed=0, confound=0.0, signal=0.0)[0], lung_histogram)
    assert np.mean(with_signal) > 0.8, with_signal
    assert without < 0.7, without
