"""The synthetic data set: real layout, planted faults, determinism, patients' shared anatomy,
coloured marks, the source confound as a positive/negative control for the leakage audit, and
the collection's annotations (lung boxes, lung masks, severity scores) with their bad entries."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
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
    ANNOTATIONS_DIR,
    BORDER,
    BOXES_FILE,
    DISEASE_DIR,
    GROUND_TRUTH_FILE,
    LATER_DIR,
    MASKS_DIR,
    REFERENCE_LUNG_AREA,
    SEVERITY_FILE,
    Anatomy,
    generate_synthetic,
    render_chest,
    severity_scores,
    write_annotations,
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


# The annotation files' structure, as /work/shared/formats/ieee8023-annotations/ shows it.
COCO_KEYS = ["info", "licenses", "categories", "images", "annotations"]
INFO_KEYS = ["description", "url", "creator", "date_created"]
LICENSE_KEYS = ["url", "id", "name"]
CATEGORIES = [
    {"supercategory": "Lungs", "id": 1, "name": "Right Lung"},
    {"supercategory": "Lungs", "id": 2, "name": "Left Lung"},
]
IMAGE_KEYS = ["license", "file_name", "height", "width", "id", "metadata"]
METADATA_KEYS = ["patientid", "offset", "sex", "age", "finding", "view", "modality"]
BOX_KEYS = ["segmentation", "area", "image_id", "bbox", "id", "category_id", "attributes"]
SEVERITY_HEADER = "filename,geographic_mean,opacity_mean"
LATER = {"seed": 0, "n_later_patients": 4}  # a later snapshot: the annotations go there


def read_annotations(folder: Path) -> tuple[dict, dict[str, Path], pd.DataFrame]:
    """The three files as a reader gets them: the COCO dict, the masks by name, and the severity
    rows as text (the `##` lines skipped)."""
    coco = json.loads((folder / BOXES_FILE).read_text(encoding="utf-8"))
    masks = {path.name: path for path in sorted((folder / MASKS_DIR).iterdir())}
    lines = (folder / SEVERITY_FILE).read_text(encoding="utf-8").splitlines()
    comments = [i for i, line in enumerate(lines) if line.startswith("##")]
    severity = pd.read_csv(
        folder / SEVERITY_FILE, skiprows=comments, dtype=str, keep_default_na=False
    )
    return coco, masks, severity


def annotations_of(root: Path, summary: dict) -> tuple[dict, dict[str, Path], pd.DataFrame]:
    return read_annotations(root / summary["annotations"]["dir"] / ANNOTATIONS_DIR)


def valid_boxes(coco: dict, bad: dict) -> dict[str, list[list[int]]]:
    """file name -> [right lung box, left lung box] of the images no bad entry touches."""
    touched = {entry["file_name"] for entry in bad.values()}
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    boxes: dict[str, list[list[int]]] = {}
    for box in coco["annotations"]:
        if names[box["image_id"]] not in touched:
            boxes.setdefault(names[box["image_id"]], []).append(box["bbox"])
    return boxes


def valid_scores(severity: pd.DataFrame, bad: dict) -> pd.DataFrame:
    """The severity rows no bad entry touches, as numbers, by file name."""
    touched = {entry["filename"] for entry in bad.values()}
    rows = severity[~severity["filename"].isin(touched)].set_index("filename")
    return rows.astype(float)


def mask_lungs(mask: np.ndarray) -> list[list[int]]:
    """[x0, y0, x1, y1] (x1, y1 past the last pixel) of the mask's left-hand and right-hand
    lung, split at the gap between their columns."""
    columns = np.flatnonzero(mask.any(axis=0))
    gap = int(np.flatnonzero(np.diff(columns) > 1)[0])
    lungs = []
    for first, last in ((columns[0], columns[gap]), (columns[gap + 1], columns[-1])):
        rows = np.flatnonzero(mask[:, first : last + 1].any(axis=1))
        lungs.append([int(first), int(rows[0]), int(last) + 1, int(rows[-1]) + 1])
    return lungs


def edges(box: list[float]) -> list[float]:
    """[x, y, width, height] as [x0, y0, x1, y1]."""
    x, y, w, h = box
    return [x, y, x + w, y + h]


def ellipse_edges(lung: tuple[float, ...], width: int, height: int) -> list[float]:
    """[x0, y0, x1, y1] in pixels of a lung ellipse (cx, cy, ax, ay) in [0, 1] coordinates."""
    cx, cy, ax, ay = lung
    return [(cx - ax) * width, (cy - ay) * height, (cx + ax) * width, (cy + ay) * height]


def test_render_chest_records_what_it_draws_without_changing_it():
    anatomy = Anatomy.draw(np.random.default_rng(5))
    for seed, kwargs in itertools.product(
        range(3),
        [{}, {"signal": 1.0}, {"signal": 0.4, "marker": 1.0}, {"anatomy": anatomy, "signal": 1.0},
         {"ct": True, "signal": 1.0}],
    ):  # fmt: skip
        planted, recorded_planted, findings = [], [], {}
        plain = render_chest(np.random.default_rng(seed), 90, 80, planted=planted, **kwargs)
        recorded = render_chest(
            np.random.default_rng(seed), 90, 80, planted=recorded_planted, findings=findings,
            **kwargs,
        )  # fmt: skip
        assert np.array_equal(plain, recorded), kwargs
        assert planted == recorded_planted
        (lx, ly, lax, lay), (rx, ry, rax, ray) = findings["lungs"]
        assert lx < 0.5 < rx and ly == ry and (lax, lay) == (rax, ray)  # left-hand lung first
        if "anatomy" in kwargs:
            assert (lax, lay) == anatomy.lung_axes
            assert rx - lx == pytest.approx(2 * anatomy.spread)
        assert 3 <= len(findings["opacities"]) <= 6
        for bx, by, sigma, amplitude in findings["opacities"]:
            depth = min(((bx - cx) / ax) ** 2 + ((by - cy) / ay) ** 2
                        for cx, cy, ax, ay in findings["lungs"])  # fmt: skip
            assert depth <= 0.75**2 + 1e-9  # centred inside a lung
            assert 0.03 <= sigma <= 0.055 and 0.18 <= amplitude <= 0.3  # before `signal`
        opacities = [row for row in planted if row["kind"] == "opacity"]
        if kwargs.get("signal"):  # the ground truth's opacities are the ones recorded
            np.testing.assert_allclose(
                [(row["cx"], row["cy"], row["sigma"]) for row in opacities],
                [blob[:3] for blob in findings["opacities"]],
            )
        else:  # nothing drawn, yet the opacities planted are listed, as at signal 1
            assert opacities == []
            at_one: dict = {}
            render_chest(np.random.default_rng(seed), 90, 80, signal=1.0, findings=at_one)
            assert at_one == findings


def test_severity_scores_follow_the_rule():
    lungs = [(0.3, 0.5, 0.1, 0.2), (0.7, 0.5, 0.1, 0.2)]
    assert severity_scores(lungs, []) == (0.0, 0.0)
    # An opacity whose effective area 2 pi sigma^2 is a quarter of the reference lung: extent
    # 4 x 1/4 = 1.0; amplitude 0.15 gives a density of 0.15 / 4 = 0.0375 of the full 0.3:
    # 3 x 0.125 = 0.375, 0.4 rounded. The lung holding it counts, either one.
    sigma = float(np.sqrt(REFERENCE_LUNG_AREA / 4 / (2 * np.pi)))
    assert severity_scores(lungs, [(0.3, 0.5, sigma, 0.15)]) == (1.0, 0.4)
    assert severity_scores(lungs, [(0.7, 0.5, sigma, 0.15)]) == (1.0, 0.4)
    # Two in one lung: both areas (2.0) and both intensities ((0.15 + 0.24) / 4 / 0.3 = 0.325).
    assert severity_scores(lungs, [(0.3, 0.4, sigma, 0.15), (0.3, 0.6, sigma, 0.24)]) == (2.0, 1.0)
    # Against a fixed area, not the lung's own: another chest, the same scores.
    other = [(0.3, 0.5, 0.08, 0.25), (0.7, 0.5, 0.08, 0.25)]
    assert severity_scores(other, [(0.3, 0.5, sigma, 0.15)]) == (1.0, 0.4)
    # Both lungs covered, dense: the top of both scales.
    assert severity_scores(lungs, [(0.3, 0.5, 0.2, 0.3), (0.7, 0.5, 0.2, 0.45)]) == (8.0, 6.0)


def drawn_entry(name: str, width: int, height: int, findings: dict) -> dict:
    """What `write_annotations` is told of one picture (cxr.synthetic._drawn)."""
    meta = {"patientid": "1", "offset": "0", "sex": "F", "age": "50", "finding": "COVID-19",
            "view": "PA", "modality": "X-ray"}  # fmt: skip
    return {"file_name": name, "width": width, "height": height, "metadata": meta, "fault": "",
            **findings}  # fmt: skip


def test_write_annotations_draws_the_lungs_it_is_given(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    drawn = []
    for k in range(10):
        width, height = 90 + 7 * k, 100 - 3 * k
        findings: dict = {}
        pixels = render_chest(
            np.random.default_rng(k), width, height, signal=1.0, findings=findings
        )
        Image.fromarray(pixels).save(images / f"case-{k}.png")
        drawn.append(drawn_entry(f"case-{k}.png", width, height, findings))
    # Left out: another view, a CT slice, a planted fault, a file that is not there.
    Image.fromarray(pixels).save(images / "other.png")
    drawn += [
        {**drawn[0], "file_name": "other.png", "metadata": {**drawn[0]["metadata"], "view": "AP"}},
        {**drawn[0], "file_name": "other.png",
         "metadata": {**drawn[0]["metadata"], "modality": "CT"}},
        {**drawn[0], "file_name": "other.png", "fault": "corrupt"},
        {**drawn[0], "file_name": "absent.png"},
    ]  # fmt: skip
    summary = write_annotations(tmp_path, drawn, seed=3)
    json.dumps(summary)  # JSON-safe
    by_name = {entry["file_name"]: entry for entry in drawn[:10]}
    assert summary["images"] == sorted(by_name)
    coco, masks, severity = read_annotations(tmp_path / ANNOTATIONS_DIR)

    boxes = valid_boxes(coco, summary["boxes"]["bad"])
    assert len(boxes) >= 3
    for name, pair in boxes.items():
        entry = by_name[name]
        for box, lung in zip(pair, entry["lungs"], strict=True):
            exact = ellipse_edges(lung, entry["width"], entry["height"])
            assert np.abs(np.subtract(edges(box), exact)).max() <= 1.0, name
        assert pair[0][0] < pair[1][0]  # category 1, the right lung, on the image's left

    wrong = summary["masks"]["bad"]["wrong_size"]["mask"]
    for mask_name in summary["masks"]["images"]:
        entry = by_name[mask_name]
        mask_name = Path(mask_name).stem + "_mask.png"
        with Image.open(masks[mask_name]) as img:
            assert img.mode == "L"
            pixels = np.asarray(img)
        assert set(np.unique(pixels)) == {0, 255}
        if mask_name == wrong:
            assert pixels.shape != (entry["height"], entry["width"])
            continue
        assert pixels.shape == (entry["height"], entry["width"])
        area = sum(np.pi * ax * ay for _cx, _cy, ax, ay in entry["lungs"])
        assert (pixels == 255).mean() == pytest.approx(area, rel=0.05), mask_name
        for found, lung in zip(mask_lungs(pixels), entry["lungs"], strict=True):
            exact = ellipse_edges(lung, entry["width"], entry["height"])
            assert np.abs(np.subtract(found, exact)).max() <= 1.0, mask_name

    scores = valid_scores(severity, summary["severity"]["bad"])
    assert len(scores) >= 5
    for name, row in scores.iterrows():
        entry = by_name[name]
        expected = severity_scores(entry["lungs"], entry["opacities"])
        assert (row["geographic_mean"], row["opacity_mean"]) == expected


def test_write_annotations_needs_an_image(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="images"):
        write_annotations(tmp_path, [], seed=0)


def test_annotation_files_have_the_collections_structure(generate):
    root, summary = generate(**LATER)
    folder = root / LATER_DIR / ANNOTATIONS_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [BOXES_FILE, MASKS_DIR, SEVERITY_FILE]
    )
    coco, masks, severity = read_annotations(folder)
    assert list(coco) == COCO_KEYS
    assert list(coco["info"]) == INFO_KEYS
    assert [list(entry) for entry in coco["licenses"]] == [LICENSE_KEYS]
    assert coco["categories"] == CATEGORIES
    assert all(list(image) == IMAGE_KEYS for image in coco["images"])
    assert all(list(image["metadata"]) == METADATA_KEYS for image in coco["images"])
    assert all(isinstance(v, str) for image in coco["images"] for v in image["metadata"].values())
    assert all("/" not in image["file_name"] for image in coco["images"])
    assert all(list(box) == BOX_KEYS for box in coco["annotations"])
    assert all(box["segmentation"] == [] for box in coco["annotations"])
    assert {json.dumps(box["attributes"]) for box in coco["annotations"]} == {
        '{"Finding": ["COVID-19"], "View": ["PA"]}'
    }
    assert [image["id"] for image in coco["images"]] == list(range(1, len(coco["images"]) + 1))
    assert [b["id"] for b in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))

    lines = (folder / SEVERITY_FILE).read_text(encoding="utf-8").splitlines()
    comments = [line for line in lines if line.startswith("##")]
    assert lines[: len(comments)] == comments and len(comments) >= 3  # comments first
    assert all(line.endswith(",,") and line.count(",") == 2 for line in comments)
    assert lines[len(comments)] == SEVERITY_HEADER
    assert list(severity.columns) == SEVERITY_HEADER.split(",")

    assert all(name.endswith("_mask.png") for name in masks)
    for path in list(masks.values())[:5]:
        with Image.open(path) as img:
            assert (img.format, img.mode) == ("PNG", "L")


def covid_pa_files(root: Path, summary: dict) -> list[str]:
    """The later snapshot's COVID-19 PA X-ray files, planted faults left out."""
    faults = summary["disease"]["faults"]
    planted = {faults["missing_file"], faults["corrupt_file"], faults["duplicate_pair"][1]}
    with open(root / LATER_DIR / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return sorted(
        r["filename"] for r in rows
        if r["finding"].endswith("COVID-19") and (r["view"], r["modality"]) == ("PA", "X-ray")
        and r["filename"] not in planted
    )  # fmt: skip


def test_annotations_cover_the_latest_snapshots_covid_pa_xrays(generate):
    root, summary = generate(**LATER)
    annotations = summary["annotations"]
    assert annotations["dir"] == LATER_DIR
    assert not (root / DISEASE_DIR / ANNOTATIONS_DIR).exists()
    names = covid_pa_files(root, summary)
    assert annotations["images"] == names
    assert all((root / LATER_DIR / "images" / name).is_file() for name in names)
    # The first snapshot's files, the new patients', follow-ups and re-uploads alike.
    first = {row["filename"] for row in read_rows(root)}
    later = summary["later"]
    assert len(first & set(names)) >= 10
    assert set(later["follow_ups"]) | set(later["reuploads"]) <= set(names)
    assert any(name.startswith("covid-19-madrid-") for name in names)
    n = len(names)
    boxes, masks, scored = (set(annotations[k]["images"]) for k in ("boxes", "masks", "severity"))
    assert (len(boxes), len(masks), len(scored)) == (
        round(0.8 * n),
        round(0.7 * n),
        round(0.95 * n),
    )
    assert boxes - masks and masks - boxes  # some images have boxes only, some masks only
    assert (boxes | masks | scored) <= set(names)


def test_annotations_go_under_the_first_root_without_a_later_snapshot(generate):
    root, summary = generate(seed=0)
    assert summary["later"] is None
    assert summary["annotations"]["dir"] == DISEASE_DIR
    folder = root / DISEASE_DIR / ANNOTATIONS_DIR
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [BOXES_FILE, MASKS_DIR, SEVERITY_FILE]
    )
    faults = summary["disease"]["faults"]
    planted = {faults["missing_file"], faults["corrupt_file"], faults["duplicate_pair"][1]}
    expected = sorted(
        r["filename"] for r in read_rows(root)
        if (r["finding"], r["view"], r["modality"]) == ("COVID-19", "PA", "X-ray")
        and r["filename"] not in planted
    )  # fmt: skip
    assert summary["annotations"]["images"] == expected


def test_each_planted_bad_annotation_is_there_and_the_rest_is_valid(generate):
    root, summary = generate(**LATER)
    annotations = summary["annotations"]
    coco, masks, severity = annotations_of(root, summary)
    images = root / LATER_DIR / "images"
    sizes = {}
    for name in annotations["images"]:
        with Image.open(images / name) as img:
            sizes[name] = img.size

    bad = annotations["boxes"]["bad"]
    assert set(bad) == {"unknown_file", "duplicate_file_name", "non_numeric_bbox",
                        "unknown_category", "box_outside_image", "wrong_image_size"}  # fmt: skip
    by_id = {image["id"]: image for image in coco["images"]}
    listed = [image["file_name"] for image in coco["images"]]
    strangers = [image for image in coco["images"] if image["file_name"] not in sizes]
    assert [(i["file_name"], i["id"]) for i in strangers] == [tuple(bad["unknown_file"].values())]
    assert not (images / strangers[0]["file_name"]).exists()
    twice = sorted({name for name in listed if listed.count(name) > 1})
    assert twice == [bad["duplicate_file_name"]["file_name"]]
    assert [i["id"] for i in coco["images"] if i["file_name"] == twice[0]] == bad[
        "duplicate_file_name"
    ]["image_ids"]
    resized = [image for image in coco["images"] if image["file_name"] in sizes
               and (image["width"], image["height"]) != sizes[image["file_name"]]]  # fmt: skip
    wrong_size = bad["wrong_image_size"]
    assert [(i["id"], [i["width"], i["height"]]) for i in resized] == [
        (wrong_size["image_id"], wrong_size["listed"])
    ]
    assert list(sizes[wrong_size["file_name"]]) == wrong_size["actual"]
    boxes = coco["annotations"]
    non_numeric = [b for b in boxes if not all(isinstance(v, int) for v in b["bbox"])]
    assert [(b["id"], b["bbox"]) for b in non_numeric] == [
        (bad["non_numeric_bbox"]["annotation_id"], bad["non_numeric_bbox"]["bbox"])
    ]
    unknown = [b for b in boxes if b["category_id"] not in (1, 2)]
    assert [(b["id"], b["category_id"]) for b in unknown] == [
        (bad["unknown_category"]["annotation_id"], 3)
    ]

    def outside(box: dict) -> bool:
        x, y, w, h = box["bbox"]
        width, height = sizes.get(by_id[box["image_id"]]["file_name"], (np.inf, np.inf))
        return x < 0 or y < 0 or x + w > width or y + h > height

    assert [b["id"] for b in boxes if b not in non_numeric and outside(b)] == [
        bad["box_outside_image"]["annotation_id"]
    ]
    assert (
        by_id[bad["box_outside_image"]["image_id"]]["file_name"]
        == bad["box_outside_image"]["file_name"]
    )
    # The rest: two integer boxes per image, right lung then left, area = width x height.
    per_image: dict[int, list[dict]] = {}
    for box in boxes:
        if box not in unknown:
            per_image.setdefault(box["image_id"], []).append(box)
    assert set(per_image) == set(by_id)
    for image_id, pair in per_image.items():
        assert [b["category_id"] for b in pair] == [1, 2], image_id
        numeric = [b for b in pair if b not in non_numeric]
        assert all(b["area"] == b["bbox"][2] * b["bbox"][3] > 0 for b in numeric)
    assert sorted({name for name in listed if name in sizes}) == annotations["boxes"]["images"]

    bad = annotations["masks"]["bad"]
    stems = {Path(name).stem: name for name in sizes}
    strangers = [name for name in masks if name.removesuffix("_mask.png") not in stems]
    assert strangers == [bad["unknown_file"]["mask"]]
    for name, path in masks.items():
        with Image.open(path) as img:
            size, pixels = img.size, np.asarray(img)
        assert set(np.unique(pixels)) == {0, 255}, name
        if name in strangers:
            continue
        image_size = sizes[stems[name.removesuffix("_mask.png")]]
        if name == bad["wrong_size"]["mask"]:
            assert list(size) == bad["wrong_size"]["size"] != list(image_size)
            assert list(image_size) == bad["wrong_size"]["image_size"]
        else:
            assert size == image_size, name
    covered = sorted(
        stems[name.removesuffix("_mask.png")] for name in masks if name not in strangers
    )
    assert covered == annotations["masks"]["images"]

    bad = annotations["severity"]["bad"]
    values = severity[["geographic_mean", "opacity_mean"]].apply(pd.to_numeric, errors="coerce")
    non_number = severity[values.isna().any(axis=1)]
    assert non_number.values.tolist() == [
        [bad["non_numeric"]["filename"], non_number["geographic_mean"].iloc[0],
         bad["non_numeric"]["value"]]
    ]  # fmt: skip
    assert severity.loc[~severity["filename"].isin(sizes), "filename"].tolist() == [
        bad["unknown_file"]["filename"]
    ]
    assert severity.loc[severity["filename"].duplicated(), "filename"].tolist() == [
        bad["duplicate_row"]["filename"]
    ]
    out = (values["geographic_mean"] > 8) | (values["opacity_mean"] > 6) | (values < 0).any(axis=1)
    assert severity[out].values.tolist() == [
        [bad["out_of_range"]["filename"], "9.5", severity[out]["opacity_mean"].iloc[0]]
    ]
    rest = severity[~values.isna().any(axis=1) & ~out]
    assert rest[["geographic_mean", "opacity_mean"]].stack().str.fullmatch(r"\d\.\d").all()
    assert sorted(set(severity["filename"]) & set(sizes)) == annotations["severity"]["images"]


def test_annotations_lie_on_the_drawn_lungs_and_opacities(generate):
    root, summary = generate(**LATER)
    annotations = summary["annotations"]
    coco, masks, severity = annotations_of(root, summary)
    truth = pd.read_csv(root / GROUND_TRUTH_FILE)
    opacities = truth[(truth["kind"] == "opacity") & (truth["source_dir"] == LATER_DIR)]
    opacities = opacities.assign(file=opacities["file"].str.removeprefix("images/"))
    boxes = valid_boxes(coco, annotations["boxes"]["bad"])
    wrong_mask = annotations["masks"]["bad"]["wrong_size"]["mask"]
    checked = 0
    for name, spots in opacities.groupby("file"):
        with Image.open(root / LATER_DIR / "images" / name) as img:
            width, height = img.size
        x, y = spots["cx"].to_numpy() * width, spots["cy"].to_numpy() * height
        if name in boxes:  # every opacity lies inside one of its image's two lung boxes
            inside = [(x >= bx) & (x <= bx + bw) & (y >= by) & (y <= by + bh)
                      for bx, by, bw, bh in boxes[name]]  # fmt: skip
            assert np.logical_or(*inside).all(), name
            checked += 1
        mask_name = f"{Path(name).stem}_mask.png"
        if mask_name in masks and mask_name != wrong_mask:
            pixels = np.asarray(Image.open(masks[mask_name]))
            assert (pixels[y.astype(int), x.astype(int)] == 255).all(), name  # on the lungs
            if name in boxes:  # and the mask's lungs are the boxes
                found = mask_lungs(pixels)
                assert np.abs(np.subtract(found, [edges(b) for b in boxes[name]])).max() <= 1, name
    assert checked >= 0.5 * len(annotations["images"])
    # The more and larger the opacities, the larger the geographic extent scored.
    scores = valid_scores(severity, annotations["severity"]["bad"])
    load = opacities.groupby("file")["sigma"].apply(lambda s: (np.pi * (2 * s) ** 2).sum())
    rho = scores["geographic_mean"].corr(load.reindex(scores.index), method="spearman")
    assert rho > 0.5, rho  # measured 0.85 at seed 0
    assert scores["geographic_mean"].between(0, 8).all()
    assert scores["opacity_mean"].between(0, 6).all() and scores["opacity_mean"].min() > 0


def test_copies_keep_the_annotations_of_their_picture(generate):
    """A first-snapshot file copied into the later snapshot, and a re-upload of one under a new
    name, are annotated as the picture was drawn."""
    later_root, later = generate(**LATER)
    first_root, first = generate(seed=0)
    later_boxes, later_scores = _valid_boxes_and_scores(later_root, later)
    first_boxes, first_scores = _valid_boxes_and_scores(first_root, first)
    common = set(later_boxes) & set(first_boxes)
    assert len(common) >= 5
    assert all(later_boxes[name] == first_boxes[name] for name in common)
    common = later_scores.index.intersection(first_scores.index)
    assert len(common) >= 5
    assert later_scores.loc[common].equals(first_scores.loc[common])
    reuploads = later["later"]["reuploads"]
    assert reuploads
    for copy, original in reuploads.items():
        if copy in later_boxes and original in later_boxes:
            assert later_boxes[copy] == later_boxes[original]
        if copy in later_scores.index and original in later_scores.index:
            assert later_scores.loc[copy].equals(later_scores.loc[original])


def _valid_boxes_and_scores(root: Path, summary: dict) -> tuple[dict, pd.DataFrame]:
    coco, _masks, severity = annotations_of(root, summary)
    annotations = summary["annotations"]
    return (
        valid_boxes(coco, annotations["boxes"]["bad"]),
        valid_scores(severity, annotations["severity"]["bad"]),
    )


def annotation_digests(root: Path, summary: dict) -> dict[str, str]:
    return tree_digests(root / summary["annotations"]["dir"] / ANNOTATIONS_DIR)


def test_annotations_follow_the_seed_not_the_signal(generate):
    digests = [annotation_digests(*generate(seed=seed)) for seed in (0, 1)]
    assert digests[0][BOXES_FILE] != digests[1][BOXES_FILE]
    assert digests[0][SEVERITY_FILE] != digests[1][SEVERITY_FILE]
    masks = [{d for name, d in digest.items() if name.startswith(MASKS_DIR)} for digest in digests]
    assert masks[0] != masks[1]
    # Same seed, same files (test_same_arguments_give_identical_bytes compares the whole tree).
    # The negative control: at signal 0 the pictures show no opacity, yet the annotations,
    # severity included, are those of the opacities planted.
    plain_root, plain = generate(seed=0, confound=0.0, signal=0.0)
    sick_root, sick = generate(seed=0, confound=0.0)
    assert annotation_digests(plain_root, plain) == annotation_digests(sick_root, sick)
    _coco, _masks, severity = annotations_of(plain_root, plain)
    scores = valid_scores(severity, plain["annotations"]["severity"]["bad"])
    assert scores["geographic_mean"].std() > 0.5
    images = f"{DISEASE_DIR}/images/"
    pictures = [
        {name: d for name, d in tree_digests(r).items() if name.startswith(images)}
        for r in (plain_root, sick_root)
    ]
    assert pictures[0] != pictures[1]
