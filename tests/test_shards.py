"""TFRecord shards: deterministic bytes, complete manifest, and a reader that round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import curation_rules, synthetic_sources
from cxr.curate import curate
from cxr.io import sha256_file
from cxr.shards import load_images, read_shards, shard_paths, write_shards


@pytest.fixture(scope="module")
def curated(synthetic_root):
    return curate(synthetic_sources(synthetic_root), curation_rules(), seed=2020)[0]


def test_two_runs_write_identical_bytes(curated, tmp_path):
    a = write_shards(curated, tmp_path / "a", image_size=32, count=3, max_pixels=10**7)
    b = write_shards(curated, tmp_path / "b", image_size=32, count=3, max_pixels=10**7)
    assert a == b
    files = sorted(p.name for p in (tmp_path / "a").glob("*.tfrecord"))
    assert files == [f"images-{k:05d}-of-00003.tfrecord" for k in range(3)]
    for name in files:
        assert sha256_file(tmp_path / "a" / name) == sha256_file(tmp_path / "b" / name)
    # every curated image once, whatever protocol later trains or tests on it
    assert a["count"] == sum(s["count"] for s in a["shards"]) == len(curated)


def test_reader_returns_every_image_with_its_fields(curated, tmp_path):
    manifest = write_shards(curated, tmp_path, image_size=32, count=2, max_pixels=10**7)
    seen = list(read_shards(shard_paths(manifest, tmp_path), image_size=48).as_numpy_iterator())
    expected = curated.set_index("id")
    assert sorted(e["id"].decode() for e in seen) == sorted(expected.index)
    for element in seen:
        assert element["image"].shape == (48, 48, 1) and element["image"].dtype == np.uint8
        row = expected.loc[element["id"].decode()]
        assert element["label"] == row["y"] and element["patient"].decode() == row["patient"]
        assert element["role"].decode() == row["role"]


def test_load_images_picks_ids_in_the_order_asked(curated, tmp_path):
    from cxr.errors import DataError
    from cxr.io import write_json

    manifest = write_shards(curated, tmp_path, image_size=32, count=2, max_pixels=10**7)
    write_json(tmp_path / "manifest.json", manifest)
    ids = list(curated["id"].iloc[[5, 0, 3]])
    images, table = load_images(tmp_path / "manifest.json", ids)
    assert list(table["id"]) == ids and images.shape == (3, 32, 32, 1)
    everything, full = load_images(tmp_path / "manifest.json")
    assert len(full) == len(curated)
    assert np.array_equal(images[1], everything[full.index[full["id"] == ids[1]][0]])
    with pytest.raises(DataError, match="not in the shards"):
        load_images(tmp_path / "manifest.json", ["nope/x.png"])


def test_fewer_images_than_shards_gives_empty_shards(curated, tmp_path):
    """The rule declares `shards.count` files before curation: each exists, some empty."""
    from cxr.io import write_json

    two = curated.sort_values("id").head(2)
    manifest = write_shards(two, tmp_path, image_size=32, count=4, max_pixels=10**7)
    assert [s["count"] for s in manifest["shards"]] == [1, 1, 0, 0]
    assert all((tmp_path / s["file"]).is_file() for s in manifest["shards"])
    write_json(tmp_path / "manifest.json", manifest)
    _, table = load_images(tmp_path / "manifest.json")
    assert sorted(table["id"]) == sorted(two["id"])
