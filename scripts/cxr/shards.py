"""TFRecord shards: one `tf.train.Example` per image (resized, lossless PNG), byte-identical
for the same inputs, plus a manifest with each shard's sha256 and count, and the reader."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxr.errors import DataError
from cxr.images import load_image
from cxr.io import atomic_path, sha256_file
from cxr.shard_names import shard_names

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
        "role": _bytes(row["role"]),
        "sha256": _bytes(row["sha256"]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_shards(
    images: pd.DataFrame,
    out_dir: Path,
    *,
    image_size: int,
    count: int,
    max_pixels: int,
) -> dict:
    """Write every curated image once into exactly `count` files
    `images-<k>-of-<count>.tfrecord` (some empty when there are fewer images than files) and
    return the manifest (the caller writes it). Which image a protocol trains or tests on is
    its split table's business, so adding a protocol never rewrites a shard."""
    import tensorflow as tf

    frame = images.sort_values("id").reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Shards of an earlier configuration (another count) or of a killed run would otherwise
    # linger beside the new ones; only the manifest says which are current.
    for stale in [*out_dir.glob("*.tfrecord"), *out_dir.glob(".*.tfrecord.part")]:
        stale.unlink()
    # Exactly `count` files, some empty when there are fewer images: the rule declares them
    # before curation says how many images there are.
    n = count
    entries = []
    done = 0
    for k, name in enumerate(shard_names(n)):
        rows = frame.iloc[k::n]  # round-robin keeps shards balanced and order stable
        path = out_dir / name
        # TFRecordWriter opens its own file: write `.<name>.part` beside, rename when complete.
        with (
            atomic_path(path, suffix_like=False) as partial,
            tf.io.TFRecordWriter(str(partial)) as writer,
        ):
            for row in rows.to_dict("records"):
                pixels, info = load_image(Path(row["path"]), max_pixels=max_pixels)
                if info.pixel_sha256 != row["sha256"]:
                    raise DataError(
                        f"{row['path']}: pixels changed since curation "
                        f"(sha256 {info.pixel_sha256} != {row['sha256']}); rerun curation"
                    )
                example = make_example(resize_square(pixels, image_size), row)
                # protobuf's upb writes map fields in random order unless told not to
                # (docs/facts.md), which would make shards differ run to run.
                writer.write(example.SerializeToString(deterministic=True))
                done += 1
                if done % 200 == 0:
                    log.info("wrote %d/%d images", done, len(frame))
        entries.append({"file": name, "count": len(rows), "sha256": sha256_file(path)})
    log.info("wrote %d images into %d shards", done, len(entries))
    return {
        "image_size": image_size,
        "encoding": "PNG, 8-bit grayscale",
        "count": len(frame),
        "shards": entries,
    }


FEATURES = {
    "image": "string",
    "label": "int64",
    "id": "string",
    "patient": "string",
    "source": "string",
    "role": "string",
    "sha256": "string",
}


def read_shards(paths: list[str | Path], *, image_size: int | None = None):
    """tf.data.Dataset of dicts {image uint8 [H,W,1], label, id, patient, source, role,
    sha256}, in the shards' order."""
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


def shard_paths(manifest: dict, shard_dir: Path) -> list[Path]:
    return [Path(shard_dir) / s["file"] for s in manifest["shards"]]


def load_images(
    manifest_path: str | Path, ids: list[str] | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """Every image of the shards named by a manifest, or those of `ids` in that order: uint8
    [N,H,W,1] pixels and a table of id, label, patient, source, role (one row per image)."""
    from cxr.io import read_json

    manifest = read_json(manifest_path)
    dataset = read_shards(shard_paths(manifest, Path(manifest_path).parent))
    pixels, rows = [], []
    for batch in dataset.batch(256).as_numpy_iterator():
        pixels.append(batch["image"])
        for i in range(len(batch["label"])):
            rows.append(
                {
                    "id": batch["id"][i].decode(),
                    "label": int(batch["label"][i]),
                    "patient": batch["patient"][i].decode(),
                    "source": batch["source"][i].decode(),
                    "role": batch["role"][i].decode(),
                }
            )
    table = pd.DataFrame(rows, columns=["id", "label", "patient", "source", "role"])
    images = np.concatenate(pixels) if pixels else np.zeros((0, 1, 1, 1), np.uint8)
    if ids is None:
        return images, table
    where = pd.Series(np.arange(len(table)), index=table["id"])
    missing = [i for i in ids if i not in where.index]
    if missing:
        raise DataError(
            f"{manifest_path}: {len(missing)} image(s) not in the shards, e.g. {missing[:3]}; "
            "rerun write_shards"
        )
    index = where[list(ids)].to_numpy()
    return images[index], table.iloc[index].reset_index(drop=True)
