"""The benchmarks' small data set: curated images (the article's own 68 + 70 where
`../shared/data` holds them, else synthetic ones), TFRecord shards of every picked image written
by the workflow's own code (cxr.curate, cxr.shards), and a split table that assigns each image to
train or val (the shards hold no split, as in the workflow)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import SHARED_DATA, repo_config, say

from cxr.config import sources_at
from cxr.curate import Rules, curate
from cxr.io import read_json, write_json
from cxr.shards import load_images, shard_paths, write_shards
from cxr.synthetic import generate_synthetic

MAX_PIXELS = repo_config()["curation"]["max_pixels"]  # the workflow's decompression-bomb limit
SHARD_COUNT = 4
DATA_CHOICES = ("auto", "article_local", "synthetic")
SPLIT_COLUMNS = ["id", "patient", "source", "label", "y", "split"]


@dataclass(frozen=True)
class Split:
    """One split in the split table's order (by id): that order decides batches and BN chunks."""

    ids: list[str]
    paths: list[str]  # the original image files
    labels: list[int]


@dataclass(frozen=True)
class Prepared:
    data: str
    manifest_path: Path
    splits: pd.DataFrame  # the split table: id, patient, source, label, y, split
    train: Split
    val: Split

    @property
    def n_images(self) -> int:
        return len(self.train.ids) + len(self.val.ids)

    @property
    def manifest(self) -> dict:
        return read_json(self.manifest_path)

    def shards(self) -> list[Path]:
        """Every shard (they hold every picked image once)."""
        return shard_paths(self.manifest, self.manifest_path.parent)

    def images(self, split: Split) -> tuple[np.ndarray, pd.DataFrame]:
        """A split's images read from the shards, in the split's order (cxr.shards.load_images)."""
        return load_images(self.manifest_path, split.ids)


def _article_sources() -> dict[str, dict]:
    sources = sources_at(repo_config(), "article_local", SHARED_DATA)
    # Only the two training sources: the external NIH set is not trained on.
    return {name: sources[name] for name in ("covid", "kermany")}


def _synthetic_sources(root: Path, n_images: int, seed: int) -> dict[str, dict]:
    dataset = repo_config()["datasets"]["synthetic"]
    settings = dict(dataset["synthetic"])
    # The default settings give about 38 disease and 60 healthy images; scale with margin.
    settings["n_disease_patients"] = max(10, math.ceil(30 * n_images / 2 / 38 * 1.3))
    settings["n_healthy_patients"] = max(6, math.ceil(45 * n_images / 2 / 60 * 1.3))
    settings["n_external_patients"] = 1
    marker = root / "settings.json"
    if not (marker.is_file() and read_json(marker) == settings):
        if root.exists():
            raise RuntimeError(f"{root} holds another synthetic set: remove it first")
        say(f"generating synthetic images into {root}: {settings}")
        generate_synthetic(root, seed=seed, **settings)
        write_json(marker, settings)
    sources = sources_at(repo_config(), "synthetic", root)
    picked = {name: sources[name] for name in ("covid", "kermany")}
    for spec in picked.values():
        spec.pop("sample", None)
    return picked


def resolve_data(data: str) -> str:
    if data != "auto":
        return data
    roots = [Path(spec["root"]) for spec in _article_sources().values()]
    return "article_local" if all(root.is_dir() for root in roots) else "synthetic"


def split_table(picked: pd.DataFrame) -> pd.DataFrame:
    """Every 5th picked image (by id) in val, the rest in train, as the workflow's split tables
    (id, patient, source, label, y, split). Image-level on purpose: the benchmarks time training,
    and this keeps the 111 + 27 of the article's 138 images that the earlier figures used."""
    table = picked.sort_values("id").reset_index(drop=True)[SPLIT_COLUMNS[:-1]].copy()
    table["split"] = ["val" if i % 5 == 4 else "train" for i in range(len(table))]
    return table


def prepare(
    workdir: Path, *, data: str, n_images: int, shard_size: int, seed: int = 2020
) -> Prepared:
    """Curate, pick `n_images` (balanced, by id), write their shards at `shard_size` under
    workdir/shards-<data>-<n>-<size> (reused when already there) and their split table."""
    data = resolve_data(data)
    if data == "article_local":
        sources = _article_sources()
    else:
        sources = _synthetic_sources(workdir / f"synthetic-{n_images}", n_images, seed)
    config = repo_config()  # config.yaml's curation settings
    rules = Rules.from_config(
        config["curation"], config["labels"], config["marks"]["chroma_threshold"]
    )
    images, _, _ = curate(sources, rules, seed)
    images = images[images["role"] != "external"].sort_values("id")
    per_class = n_images // 2
    picked = pd.concat(
        [group.head(per_class) for _, group in images.groupby("y", sort=True)]
    ).sort_values("id")
    if len(picked) < n_images:  # one class short (the article has 68 COVID-19 images)
        rest = images[~images["id"].isin(picked["id"])]
        picked = pd.concat([picked, rest.head(n_images - len(picked))]).sort_values("id")
    picked = picked.reset_index(drop=True)
    splits = split_table(picked)

    shard_dir = workdir / f"shards-{data}-{len(picked)}-{shard_size}"
    manifest_path = shard_dir / "manifest.json"
    # "count" is new with the protocols layout: shards of the earlier per-split layout differ.
    key = {"ids": picked["id"].tolist(), "size": shard_size, "count": SHARD_COUNT}
    if not (manifest_path.is_file() and read_json(manifest_path).get("key") == key):
        manifest = write_shards(
            picked, shard_dir, image_size=shard_size, count=SHARD_COUNT, max_pixels=MAX_PIXELS
        )
        write_json(manifest_path, {**manifest, "key": key})
    splits.to_csv(shard_dir / "splits.csv", index=False)

    by_id = picked.set_index("id")

    def split(name: str) -> Split:
        ids = splits.loc[splits["split"] == name, "id"].tolist()
        return Split(
            ids, [str(by_id.loc[i, "path"]) for i in ids], [int(by_id.loc[i, "y"]) for i in ids]
        )

    return Prepared(data, manifest_path, splits, split("train"), split("val"))
