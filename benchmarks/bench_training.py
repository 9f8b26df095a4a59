"""Benchmark 1: frozen training, the article's way against ours.

The article's way: base + head fitted for E epochs on images that a tf.data pipeline reads from
the original files, decodes and resizes every epoch (and for every validation pass), as the
article's input pipeline did. Ours: cxr.training.train(), which runs the frozen base once over
the images read from TFRecord shards (cxr.shards.load_images, timed) and fits the head on the
cached features; the workflow splits this into extract_features (the base, once per
architecture for every protocol) and train_model (the head on stored features), which compute
the same. Same seed, same head, same batch order
(cxr.fitting's per-epoch order); the images are decoded and resized by the workflow's own
functions (cxr.images.load_image, cxr.shards.resize_square) in both paths, and the shards are
written at the training size, so the base sees the same pixels and the head weights can be
compared bit for bit.

Weights: random by default (nothing is downloaded), which needs one BatchNorm recalibration pass
over the training images in both paths (as the workflow does); the article used ImageNet weights,
which need none, so the ratio is also given without that pass. `--weights-dir` uses local
ImageNet files instead.

`--in-memory` adds a third timing: train(strategy="full-model"), the whole model fitted on images
decoded once and held in memory (the article's way minus the per-epoch decoding).
"""

# ruff: noqa: E402 (TF_ENABLE_ONEDNN_OPTS must be set before anything imports TensorFlow)
import os

# TensorFlow reads it once, at import: oneDNN is 1.2-2x faster on this CPU (docs/facts.md), and the
# workflow's TensorFlow rules turn it on too (training.onednn: true).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import dataclasses
import math
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from common import OUT, cpu_label, emit, repo_config, say
from dataset import DATA_CHOICES, MAX_PIXELS, Prepared, Split, prepare

from cxr.architectures import Architecture, resolve_architectures
from cxr.fitting import epoch_order
from cxr.heads import TrainSettings, seeded_head
from cxr.images import load_image
from cxr.models import (
    build_base,
    build_classifier,
    preprocess,
    recalibrate_batchnorm,
    to_rgb,
)
from cxr.runtime import configure_tensorflow
from cxr.shards import resize_square
from cxr.training import train

# epoch_order is imported from cxr.fitting, not copied, so that the two paths
# cannot drift apart: the comparison of weights needs the exact same batches.


def _decoder(image_size: int):
    def load(path: bytes) -> np.ndarray:
        # The article used cv2.imread + cv2.resize; these are the workflow's PIL equivalents,
        # which wrote the shards, so both paths feed the base the same pixels.
        pixels, _ = load_image(Path(path.decode()), max_pixels=MAX_PIXELS)
        return resize_square(pixels, image_size)[..., None]

    def decode(path: tf.Tensor) -> tf.Tensor:
        # stateful=False: a pure function of the path, so tf.data may run it in parallel
        # under op determinism.
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 1))
        return image

    return decode


def image_pipeline(
    split: Split, orders: np.ndarray, arch: Architecture, image_size: int, batch_size: int
) -> tf.data.Dataset:
    """(x, y) batches that decode and resize every image from its file, epoch after epoch
    (one row of `orders` per epoch), then make the base's input (RGB, preprocess_input)."""
    decode = _decoder(image_size)
    paths = tf.constant(split.paths)
    labels = tf.constant(split.labels, dtype=tf.int64)
    preprocess_input = arch.preprocess_input()

    def epoch(order: tf.Tensor) -> tf.data.Dataset:
        items = tf.data.Dataset.from_tensor_slices(order)
        items = items.map(
            lambda i: (decode(tf.gather(paths, i)), tf.gather(labels, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        return items.batch(batch_size)

    def model_input(x: tf.Tensor, y: tf.Tensor):
        return preprocess_input(to_rgb(x)), y

    batches = tf.data.Dataset.from_tensor_slices(orders.astype(np.int64)).flat_map(epoch)
    # A known length, as train() gives its validation data: Keras then expects no more.
    per_epoch = math.ceil(orders.shape[1] / batch_size)
    batches = batches.apply(tf.data.experimental.assert_cardinality(per_epoch * len(orders)))
    return batches.map(model_input).prefetch(tf.data.AUTOTUNE)


def article_way(
    arch: Architecture, data: Prepared, settings: TrainSettings, image_size: int,
    weights: Path | None,
) -> dict:  # fmt: skip
    """Fit base + head on images decoded every epoch; return seconds (all, and of the
    BatchNorm recalibration), head weights and the last epoch's loss."""
    n, bs, seed = len(data.train.ids), settings.batch_size, settings.seed
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    base = build_base(arch, image_size, weights)
    recalibration = 0.0
    if weights is None:
        # Random weights need BatchNorm statistics: one pass over the training images, read
        # from their files, in the near-equal chunks train() uses.
        begun = time.perf_counter()
        decode = _decoder(image_size)
        files = tf.data.Dataset.from_tensor_slices(data.train.paths)
        raw = np.stack(list(files.map(decode).as_numpy_iterator()))
        chunks = np.array_split(raw, math.ceil(n / bs))
        recalibrate_batchnorm(base, (preprocess(arch, c, image_size) for c in chunks), bs)
        recalibration = time.perf_counter() - begun

    head = seeded_head(base.output_shape[1:], settings)
    model = build_classifier(base, head)
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    orders = np.stack([epoch_order(n, seed, e) for e in range(settings.epochs)])
    val_order = np.arange(len(data.val.ids))[None]
    history = model.fit(
        image_pipeline(data.train, orders, arch, image_size, bs),
        steps_per_epoch=math.ceil(n / bs),
        epochs=settings.epochs,
        validation_data=image_pipeline(data.val, val_order, arch, image_size, bs),
        shuffle=False,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "seconds_recalibration": recalibration,
        "head": head.get_weights(),
        "final_loss": float(history.history["loss"][-1]),
    }


def our_way(
    arch: Architecture,
    data: Prepared,
    settings: TrainSettings,
    image_size: int,
    *,
    strategy: str,
    out_dir: Path,
    weights: Path | None,
) -> dict:
    """cxr.training.train() on the splits' images read from the shards (reading included in
    the time); return seconds, head weights and its summary."""
    shutil.rmtree(out_dir, ignore_errors=True)
    started = time.perf_counter()

    def dataset(split: Split) -> tf.data.Dataset:
        images, table = data.images(split)
        return tf.data.Dataset.from_tensor_slices(
            {"image": images, "label": table["label"].to_numpy(np.int64), "id": table["id"]}
        )

    summary = train(
        arch,
        dataset(data.train),
        dataset(data.val),
        settings,
        image_size=image_size,
        weights=weights,
        out_dir=out_dir,
        strategy=strategy,
    )
    seconds = time.perf_counter() - started
    model = keras.models.load_model(out_dir / "model.keras", compile=False)
    return {
        "seconds": seconds,
        "head": model.get_layer("head").get_weights(),
        "final_loss": summary["final"]["loss"],
        "summary": summary,
    }


def identical(a: list[np.ndarray], b: list[np.ndarray]) -> tuple[bool, float]:
    same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
    return same, diff


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=["MobileNet", "ResNet50"],
        help="keras.applications bases to compare (default: %(default)s)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=224,
        help="input side in pixels, the article's 224 (default: %(default)s)",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=140,
        help="images in all, every 5th for validation (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=int, default=20, help="(default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=repo_config()["training"]["batch_size"],
        help="(default: config.yaml's training.batch_size, %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="TensorFlow intra/inter-op threads (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        choices=DATA_CHOICES,
        default="auto",
        help="the article's images from ../shared/data when present (auto), or "
        "synthetic ones (default: %(default)s)",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="a folder of <architecture>.h5 ImageNet files (as rule fetch_weights writes to "
        "resources/weights/); default: random weights, BatchNorm recalibrated in both paths",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="also time train(strategy='full-model'): whole model, images in memory",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=OUT / "scratch" / "training",
        help="scratch directory (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runtime = configure_tensorflow(args.threads)
    data = prepare(args.workdir, data=args.data, n_images=args.images, shard_size=args.image_size)
    # config.yaml's head (schema defaults filled in), with the benchmark's epochs and batch.
    settings = dataclasses.replace(
        TrainSettings.from_config(repo_config()["training"], args.seed),
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    say(
        f"{data.data}: {len(data.train.ids)} training + {len(data.val.ids)} validation images at "
        f"{args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, "
        f"{args.threads} threads, oneDNN {runtime['TF_ENABLE_ONEDNN_OPTS']}; CPU: {cpu_label()}"
    )
    for arch in resolve_architectures(args.architectures):
        weights = args.weights_dir / f"{arch.name}.h5" if args.weights_dir else None
        model_dir = args.workdir / "model"
        ours = our_way(
            arch,
            data,
            settings,
            args.image_size,
            strategy="auto",
            out_dir=model_dir,
            weights=weights,
        )
        article = article_way(arch, data, settings, args.image_size, weights)
        same, diff = identical(article["head"], ours["head"])
        # Random weights add one BatchNorm pass to both paths, which ImageNet weights (the
        # article's) do not need: also give the ratio without it (the article path's timing of
        # that pass taken off both; ours runs the same pass on the same images).
        recal = article["seconds_recalibration"]
        record = {
            "architecture": arch.name,
            "data": data.data,
            "n_train": len(data.train.ids),
            "n_val": len(data.val.ids),
            "image_size": args.image_size,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "seconds_article": round(article["seconds"], 2),
            "seconds_ours": round(ours["seconds"], 2),
            "ours_seconds_features": ours["summary"]["seconds_features"],
            "ours_seconds_fit": ours["summary"]["seconds_fit"],
            "ours_path": ours["summary"]["path"],
            "weights": "imagenet" if weights else "random, BatchNorm recalibrated",
            "seconds_recalibration": round(recal, 2),
            "speedup": round(article["seconds"] / ours["seconds"], 2),
            "speedup_without_recalibration": round(
                (article["seconds"] - recal) / (ours["seconds"] - recal), 2
            ),
            "head_weights_identical": same,
            "head_weights_max_abs_diff": diff,
            "final_loss_article": article["final_loss"],
            "final_loss_ours": ours["final_loss"],
        }
        line = (
            f"{arch.name}: article's way {article['seconds']:.1f} s, ours {ours['seconds']:.1f} s"
            f" -> {record['speedup']:.1f}x ({record['speedup_without_recalibration']:.1f}x without "
            f"the BatchNorm pass of {recal:.1f} s); head weights identical: {same} "
            f"(max |diff| {diff:g}) [{cpu_label()}]"
        )
        if args.in_memory:
            memory = our_way(
                arch,
                data,
                settings,
                args.image_size,
                strategy="full-model",
                out_dir=model_dir,
                weights=weights,
            )
            same_memory, diff_memory = identical(memory["head"], ours["head"])
            record.update(
                seconds_in_memory=round(memory["seconds"], 2),
                speedup_vs_in_memory=round(memory["seconds"] / ours["seconds"], 2),
                in_memory_head_weights_identical=same_memory,
                in_memory_head_weights_max_abs_diff=diff_memory,
            )
            line += (
                f"; in-memory full model {memory['seconds']:.1f} s "
                f"({record['speedup_vs_in_memory']:.1f}x), identical: {same_memory}"
            )
        say(line)
        emit("training", record)
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
