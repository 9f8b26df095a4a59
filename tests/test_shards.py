"""TFRecord shards: deterministic bytes, complete manifest, and a reader that round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import synthetic_sources
from cxr.curate import Rules, curate
from cxr.io import sha256_file
from cxr.shards import read_shards, shard_paths, write_shards
from cxr.split import split_patients


@pytest.fixture(scope="module")
def curated(synthetic_root):
    images = curate(synthetic_sources(synthetic_root), Rules(), seed=2020)[0]
    splits = split_patients(images, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=0)
    return images, splits


def test_two_runs_write_identical_bytes(curated, tmp_path):
    images, splits = curated
    a = write_shards(images, splits, tmp_path / "a", image_size=32, shards_per_split=2,
                     max_pixels=10**7)  # fmt: skip
    b = write_shards(images, splits, tmp_path / "b", image_size=32, shards_per_split=2,
                     max_pixels=10**7)  # fmt: skip
    assert a == b
    files = sorted(p.name for p in (tmp_path / "a").glob("*.tfrecord"))
    assert len(files) == 8  # 4 splits x 2 shards
    for name in files:
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
    assert sum(s["count"] for s in a["splits"].values()) == len(images)


def test_reader_returns_every_image_with_its_fields(curated, tmp_path):
    images, splits = curated
    manifest = write_shards(images, splits, tmp_path, image_size=32, shards_per_split=2,
                            max_pixels=10**7)  # fmt: skip
    dataset = read_shards(shard_paths(manifest, tmp_path, "test"), image_size=48)
    seen = list(dataset.as_numpy_iterator())
    expected = splits[splits["split"] == "test"].set_index("id")
    assert sorted(e["id"].decode() for e in seen) == sorted(expected.index)
    for element in seen:
        assert element["image"].shape == (48, 48, 1) and element["image"].dtype == np.uint8
        row = expected.loc[element["id"].decode()]
        assert element["label"] == row["y"] and element["patient"].decode() == row["patient"]
