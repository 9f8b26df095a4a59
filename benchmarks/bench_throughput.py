"""Benchmark 2: how close each base's forward pass comes to this CPU's fp32 peak, and whether the
input pipeline could ever be what limits it.

Model: images/s of base.predict_on_batch (as rule extract_features runs the frozen base, once
per image) over the shards' images, preprocessed beforehand, batch 32; times FLOPs per image
(counted by TensorFlow's profiler on the frozen graph, multiply-add = 2) gives achieved GFLOP/s,
divided by the peak (cores x clock x fp32 FLOP/cycle, read from /proc/cpuinfo and the CPU flags)
and by what a large fp32 matrix product reaches on the same threads (a VM reports only the
nominal clock).
Input pipeline: images/s of cxr.shards.read_shards (read + PNG decode + resize to the model's
size) and batching, alone; then with the conversion to the base's input (RGB, preprocess_input).
Shards are written at 256 px and read at 224, as the workflow's article datasets do.
"""

# ruff: noqa: E402 (TF_ENABLE_ONEDNN_OPTS must be set before anything imports TensorFlow)
import os

# TensorFlow reads it once, at import: oneDNN is 1.2-2x faster on this CPU (docs/facts.md), and the
# workflow's TensorFlow rules turn it on too (training.onednn: true).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from common import OUT, cpu_label, emit, machine, median_time, say
from dataset import DATA_CHOICES, prepare

from cxr.architectures import Architecture, resolve_architectures
from cxr.models import build_base, preprocess, recalibrate_batchnorm
from cxr.runtime import configure_tensorflow
from cxr.shards import read_shards


def count_flops(model: keras.Model, image_size: int) -> int:
    """FLOPs of one image through `model`, from TensorFlow's profiler (multiply-add = 2)."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([1, image_size, image_size, 3], tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph = convert_variables_to_constants_v2(function).graph
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    profile = tf.compat.v1.profiler.profile(
        graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    return int(profile.total_float_ops)


def gemm(n: int):
    """A function running one n x n fp32 matrix product through TensorFlow; returns GFLOP/s.
    It is what these cores reach in practice: the VM reports only the nominal clock, and a
    figure above the nominal peak means the cores run faster (boost)."""
    a = tf.random.uniform((n, n), dtype=tf.float32, seed=1)
    b = tf.random.uniform((n, n), dtype=tf.float32, seed=2)
    tf.linalg.matmul(a, b).numpy()  # warm-up

    def once() -> float:
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        return 2 * n**3 / (time.perf_counter() - started) / 1e9

    return once


def pipeline_rate(paths, image_size: int, batch_size: int, passes: int, arch=None) -> float:
    """Images/s of read + decode + resize + batch (and the base's input when `arch` is given)."""
    dataset = read_shards(paths, image_size=image_size).repeat(passes).batch(batch_size)
    if arch is not None:
        preprocess_input = arch.preprocess_input()
        dataset = dataset.map(
            lambda b: preprocess_input(tf.repeat(tf.cast(b["image"], tf.float32), 3, axis=-1))
        )
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    count = 0
    started = time.perf_counter()
    for batch in dataset:
        count += int((batch["image"] if arch is None else batch).shape[0])
    return count / (time.perf_counter() - started)


def forward_rate(
    arch: Architecture, images: np.ndarray, image_size: int, batch_size: int, repeats: int,
    ceiling,
) -> tuple[float, list[float], list[float], keras.Model]:  # fmt: skip
    """Images/s of the base's forward pass over `images` (uint8 grayscale): the median of
    `repeats` timings, each right after one GEMM (`ceiling()`, GFLOP/s), so that both see the
    same load on a shared machine. Returns (images/s, seconds per pass, GEMM figures, base)."""
    keras.utils.set_random_seed(0)
    base = build_base(arch, image_size, None)
    x = preprocess(arch, images, image_size)
    # Random weights: set BatchNorm statistics first so activations are realistic (docs/facts.md:
    # without it MobileNet's shrink to ~1e-20, and denormals could skew the timing).
    recalibrate_batchnorm(base, x[:batch_size], batch_size)
    base.predict_on_batch(x[:batch_size])  # warm-up: tracing and oneDNN kernel selection

    def run():
        for start in range(0, len(x), batch_size):
            base.predict_on_batch(x[start : start + batch_size])

    times, gemms = [], []
    for _ in range(repeats):
        gemms.append(ceiling())
        times.append(median_time(run, 1)[0])
    return len(x) / float(np.median(times)), times, gemms, base


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=["MobileNet", "ResNet50", "DenseNet121"],
        help="bases to time (default: %(default)s)",
    )
    parser.add_argument(
        "--image-size", type=int, default=224, help="model input side (default: %(default)s)"
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=256,
        help="side stored in the shards (default: %(default)s)",
    )
    parser.add_argument(
        "--images", type=int, default=140, help="images in the shards (default: %(default)s)"
    )
    parser.add_argument(
        "--forward-images",
        type=int,
        default=64,
        help="images per timed forward pass over the shards' images (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timings per figure; the median is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--pipeline-images",
        type=int,
        default=2000,
        help="images the input pipeline reads per timing, the shards repeated "
        "(default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument(
        "--data", choices=DATA_CHOICES, default="auto", help="(default: %(default)s)"
    )
    parser.add_argument(
        "--gemm-size",
        type=int,
        default=4096,
        help="side of the matrices of the GEMM ceiling (default: %(default)s)",
    )
    parser.add_argument(
        "--flops-per-cycle",
        type=int,
        default=None,
        help="override the fp32 FLOP/cycle/core derived from the CPU flags",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=OUT / "scratch" / "throughput",
        help="scratch directory (default: %(default)s)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_tensorflow(args.threads)
    info = machine()
    per_cycle = args.flops_per_cycle or info["fp32_flop_per_cycle"]
    peak = info["cores"] * info["clock_ghz"] * per_cycle
    why = "--flops-per-cycle" if args.flops_per_cycle else info["fp32_flop_per_cycle_source"]
    say(
        f"peak fp32 = {info['cores']} cores x {info['clock_ghz']} GHz ({info['clock_source']}) x "
        f"{per_cycle} FLOP/cycle ({why}) = {peak:.1f} GFLOP/s; CPU: {cpu_label(info)}"
    )
    ceiling = gemm(args.gemm_size)
    data = prepare(args.workdir, data=args.data, n_images=args.images, shard_size=args.shard_size)
    paths = data.shards()  # every image once, as the workflow's shards
    passes = max(1, -(-args.pipeline_images // data.n_images))

    def rate(arch=None):
        values = [
            pipeline_rate(paths, args.image_size, args.batch_size, passes, arch)
            for _ in range(args.repeats)
        ]
        return float(np.median(values)), [round(v, 1) for v in values]

    pipeline, pipeline_all = rate()
    say(
        f"input pipeline (read + decode + resize {args.shard_size}->{args.image_size} + batch "
        f"{args.batch_size}): {pipeline:.0f} images/s over {passes * data.n_images} images"
    )
    images = np.stack(
        [row["image"] for row in read_shards(paths, image_size=args.image_size).as_numpy_iterator()]
    )
    images = np.resize(images, (args.forward_images, *images.shape[1:]))  # cycles if fewer
    results = []
    for arch in resolve_architectures(args.architectures):
        with_input, with_input_all = rate(arch)
        fps, times, gemms, base = forward_rate(
            arch, images, args.image_size, args.batch_size, args.repeats, ceiling
        )
        flops = count_flops(base, args.image_size)
        achieved = fps * flops / 1e9
        gemm_gflops = float(np.median(gemms))
        # Each forward timing against the GEMM measured just before it, then the median.
        pairs = zip(times, gemms, strict=True)
        of_gemm = float(np.median([len(images) / t * flops / 1e9 / g for t, g in pairs]))
        effective_clock = max(gemms) / (info["cores"] * per_cycle)
        record = {
            "architecture": arch.name,
            "data": data.data,
            "image_size": args.image_size,
            "shard_size": args.shard_size,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "forward_images_per_s": round(fps, 2),
            "forward_seconds": [round(t, 3) for t in times],
            "forward_images": len(images),
            "gflop_per_image": round(flops / 1e9, 3),
            "achieved_gflops": round(achieved, 1),
            "peak_gflops": round(peak, 1),
            "peak_inputs": {
                "cores": info["cores"],
                "clock_ghz": info["clock_ghz"],
                "fp32_flop_per_cycle": per_cycle,
            },  # fmt: skip
            "fraction_of_peak": round(achieved / peak, 3),
            "gemm_gflops": round(gemm_gflops, 1),
            "gemm_gflops_all": [round(g, 1) for g in gemms],
            "gemm_size": args.gemm_size,
            "fraction_of_gemm": round(of_gemm, 3),
            "clock_ghz_implied_by_gemm": round(effective_clock, 2),
            "pipeline_images_per_s": round(pipeline, 1),
            "pipeline_images_per_s_all": pipeline_all,
            "pipeline_with_preprocess_images_per_s": round(with_input, 1),
            "pipeline_with_preprocess_all": with_input_all,
            "pipeline_over_forward": round(pipeline / fps, 1),
        }
        results.append(record)
        say(
            f"{arch.name}: {flops / 1e9:.2f} GFLOP/image, {fps:.1f} images/s -> "
            f"{achieved:.1f} GFLOP/s = {achieved / peak:.0%} of the nominal peak, "
            f"{of_gemm:.0%} of a GEMM measured alongside ({gemm_gflops:.0f} GFLOP/s, so the cores"
            f" run at >= {effective_clock:.2f} GHz); input pipeline "
            f"{pipeline:.0f} images/s ({with_input:.0f} with preprocess_input) = "
            f"{pipeline / fps:.0f}x the model [{cpu_label()}]"
        )
        emit("throughput", record)
        keras.backend.clear_session()
    slowest = min(results, key=lambda r: r["forward_images_per_s"])
    say(
        f"slowest base: {slowest['architecture']} at {slowest['forward_images_per_s']} images/s; "
        f"the input pipeline is {pipeline / slowest['forward_images_per_s']:.0f}x faster "
        "(target: at least 5x)"
    )


if __name__ == "__main__":
    main()
