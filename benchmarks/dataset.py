"""The benchmarks' small data set: curated images (the article's own 68 + 70 where
`../shared/data` holds them, else synthetic ones), a train/val assignment, and TFRecord shards
written by the workflow's own code (cxr.curate, cxr.shards)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from common import REPO, repo_config, say

from cxr.curate import Rules, curate
from cxr.io import read_json, write_json
from cxr.shards import read_shards, shard_paths, write_shards
from cxr.synthetic import generate_synthetic

MAX_PIXELS = 50_000_000
DATA_CHOICES = ("auto", "article_local", "synthetic")


@dataclass(frozen=True)
class Split:
    """One split in the order the shards yield it (that order decides batches and BN chunks)."""

    ids: list[str]
    paths: list[str]  # the original image files
    labels: list[int]


@dataclass(frozen=True)
class Prepared:
    data: str
    shard_dir: Path
    manifest: dict
    train: Split
    val: Split

    @property
    def n_images(self) -> int:
        return len(self.train.ids) + len(self.val.ids)

    def shards(self, split: str) -> list[Path]:
        return shard_paths(self.manifest, self.shard_dir, split)


def _article_sources() -> dict[str, dict]:
    sources = repo_config()["datasets"]["article_local"]["sources"]
    # Only the two training sources: the external NIH set is not trained on.
    picked = {name: dict(sources[name]) for name in ("covid", "kermany")}
    for spec in picked.values():
        spec["root"] = str((REPO / spec["root"]).resolve())
    return picked


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
    picked = {name: dict(dataset["sources"][name]) for name in ("covid", "kermany")}
    for spec in picked.values():
        spec["root"] = str(root / Path(spec["root"]).name)
        spec.pop("sample", None)
    return picked


def resolve_data(data: str) -> str:
    if data != "auto":
        return data
    roots = [Path(spec["root"]) for spec in _article_sources().values()]
    return "article_local" if all(root.is_dir() for root in roots) else "synthetic"


def prepare(
    workdir: Path, *, data: str, n_images: int, shard_size: int, seed: int = 2020
) -> Prepared:
    """Curate, pick `n_images` (balanced, by id), put every 5th in val, write shards at
    `shard_size` under workdir/shards-<data>-<n>-<size>; reuse them when already there."""
    data = resolve_data(data)
    if data == "article_local":
        sources = _article_sources()
    else:
        sources = _synthetic_sources(workdir / f"synthetic-{n_images}", n_images, seed)
    images, _, _ = curate(sources, Rules(), seed)
    images = images[images["role"] != "external"].sort_values("id")
    per_class = n_images // 2
    picked = pd.concat(
        [group.head(per_class) for _, group in images.groupby("y", sort=True)]
    ).sort_values("id")
    if len(picked) < n_images:  # one class short (the article has 68 COVID-19 images)
        rest = images[~images["id"].isin(picked["id"])]
        picked = pd.concat([picked, rest.head(n_images - len(picked))]).sort_values("id")
    picked = picked.reset_index(drop=True)
    splits = picked[["id"]].copy()
    splits["split"] = ["val" if i % 5 == 4 else "train" for i in range(len(picked))]

    shard_dir = workdir / f"shards-{data}-{len(picked)}-{shard_size}"
    manifest_path = shard_dir / "manifest.json"
    key = {"ids": picked["id"].tolist(), "size": shard_size}
    if not (manifest_path.is_file() and read_json(manifest_path).get("key") == key):
        manifest = write_shards(
            picked, splits, shard_dir, image_size=shard_size, shards_per_split=2,
            max_pixels=MAX_PIXELS,
        )  # fmt: skip
        write_json(manifest_path, {**manifest, "key": key})
    manifest = read_json(manifest_path)

    by_id = picked.set_index("id")

    def split(name: str) -> Split:
        ids = [
            row["id"].decode()
            for row in read_shards(shard_paths(manifest, shard_dir, name)).as_numpy_iterator()
        ]
        return Split(
            ids, [str(by_id.loc[i, "path"]) for i in ids], [int(by_id.loc[i, "y"]) for i in ids]
        )

    return Prepared(data, shard_dir, manifest, split("train"), split("val"))
