"""TFRecord shards: one `tf.train.Example` per image (resized, lossless PNG), byte-identical
for the same inputs, plus a manifest with each shard's sha256 and count, and the reader."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr.errors import DataError
from cxr.images import load_image
from cxr.io import sha256_file

log = logging.getLogger(__name__)


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size ignoring aspect, as the article's cv2.resize(img, (224, 224)) did."""
    image = Image.fromarray(pixels, mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # Fixed compression level and no metadata chunks: same pixels, same bytes.
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def make_example(pixels: np.ndarray, row: dict):
    import tensorflow as tf

    def _bytes(value: bytes | str):
        data = value.encode("utf-8") if isinstance(value, str) else value
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))

    def _int(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature = {
        "image": _bytes(encode_png(pixels)),
        "label": _int(row["y"]),
        "id": _bytes(row["id"]),
        "patient": _bytes(row["patient"]),
        "source": _bytes(row["source"]),
        "sha256": _bytes(row["sha256"]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shards(
    images: pd.DataFrame,
    splits: pd.DataFrame,
    out_dir: Path,
    *,
    image_size: int,
    shards_per_split: int,
    max_pixels: int,
) -> dict:
    """Write `<split>-<k>-of-<n>.tfrecord` files and return the manifest (also written)."""
    import tensorflow as tf

    frame = images.merge(splits[["id", "split"]], on="id", validate="one_to_one")
    frame = frame.sort_values(["split", "id"]).reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Shards of an earlier configuration (another count per split) or of a killed run would
    # otherwise linger beside the new ones; only the manifest says which are current.
    for stale in [*out_dir.glob("*.tfrecord"), *out_dir.glob(".*.tfrecord.part")]:
        stale.unlink()
    manifest = {"image_size": image_size, "encoding": "PNG, 8-bit grayscale", "splits": {}}
    done = 0
    for split_name, part in frame.groupby("split", sort=True):
        n = min(shards_per_split, len(part))
        entries = []
        for k in range(n):
            rows = part.iloc[k::n]  # round-robin keeps shards balanced and order stable
            name = f"{split_name}-{k:05d}-of-{n:05d}.tfrecord"
            path = out_dir / name
            partial = path.with_name(f".{name}.part")
            # TFRecordWriter opens its own file: write beside, rename when complete, so a
            # killed job never leaves a shard that looks finished.
            with tf.io.TFRecordWriter(str(partial)) as writer:
                for row in rows.to_dict("records"):
                    pixels, info = load_image(Path(row["path"]), max_pixels=max_pixels)
                    if info.pixel_sha256 != row["sha256"]:
                        raise DataError(
                            f"{row['path']}: pixels changed since curation "
                            f"(sha256 {info.pixel_sha256} != {row['sha256']}); rerun curation"
                        )
                    example = make_example(resize_square(pixels, image_size), row)
                    # protobuf's upb writes map fields in random order unless told not to
                    # (FACTS.md), which would make shards differ run to run.
                    writer.write(example.SerializeToString(deterministic=True))
                    done += 1
                    if done % 200 == 0:
                        log.info("wrote %d/%d images", done, len(frame))
            os.replace(partial, path)
            entries.append({"file": name, "count": len(rows), "sha256": sha256_file(path)})
        manifest["splits"][split_name] = {"count": len(part), "shards": entries}
    log.info(
        "wrote %d images into %d shards",
        done,
        sum(len(s["shards"]) for s in manifest["splits"].values()),
    )
    return manifest


FEATURES = {
    "image": "string",
    "label": "int64",
    "id": "string",
    "patient": "string",
    "source": "string",
    "sha256": "string",
}


def read_shards(paths: list[str | Path], *, image_size: int | None = None):
    """tf.data.Dataset of dicts {image uint8 [H,W,1], label, id, patient, source, sha256}."""
    import tensorflow as tf

    spec = {
        k: tf.io.FixedLenFeature([], tf.int64 if v == "int64" else tf.string)
        for k, v in FEATURES.items()
    }

    def parse(serialized):
        example = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_png(example["image"], channels=1)
        if image_size is not None:
            image = tf.cast(tf.round(tf.image.resize(image, (image_size, image_size))), tf.uint8)
        example["image"] = image
        return example

    files = tf.data.Dataset.from_tensor_slices([str(p) for p in paths])
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(4, len(paths))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def shard_paths(manifest: dict, shard_dir: Path, split: str) -> list[Path]:
    return [shard_dir / s["file"] for s in manifest["splits"].get(split, {}).get("shards", [])]
