"""6b. Saliency cost at the article's image size: seconds per image per architecture for
Grad-CAM and occlusion on random-weight bases at `--image-size` (default 224, the article's),
on `--images` synthetic 256-px images, with the workflow's own functions (cxr.attribution) and
the config's saliency settings. Needs no finished run; prints the CPU with every figure.

    .venv/bin/python benchmarks/bench_saliency_size.py --image-size 224 --images 4
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import cpu_label, effective_config, emit, say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--shard-size", type=int, default=256, help="side of the stored images")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--architectures", nargs="+", default=None)
    args = parser.parse_args()
    config = effective_config()
    training, settings = config["training"], config["saliency"]
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if training["onednn"] else "0"
    import tensorflow as tf

    from cxr import attribution
    from cxr.jobs import architecture
    from cxr.models import build_base, build_head, preprocess

    rng = np.random.default_rng(0)
    side = args.shard_size
    images = rng.integers(0, 256, (args.images, side, side, 1), dtype=np.uint8)
    predicted = np.arange(args.images) % 2
    patch = max(1, round(settings["occlusion_patch"] * side))
    stride = max(1, round(settings["occlusion_stride"] * side))
    for name in args.architectures or training["architectures"]:
        arch = architecture(name, training)
        base = build_base(arch, args.image_size, None)
        head = build_head(
            tuple(base.output_shape[1:]),
            pool_size=training["pool_size"],
            dense_units=training["dense_units"],
            dropout=training["dropout"],
        )

        # Compiled, as cxr.jobs.explain_job does.
        classify = tf.function(
            lambda x, base=base, head=head: head(base(x, training=False), training=False),
            reduce_retracing=True,
        )

        per_call = attribution.images_per_call(args.image_size)

        def predict(batch, classify=classify, arch=arch, per_call=per_call):
            out = [
                np.asarray(classify(preprocess(arch, batch[i : i + per_call], args.image_size)))
                for i in range(0, len(batch), per_call)
            ]
            return np.concatenate(out)[:, 1]

        predict(images[:1])  # graph tracing and kernel choice out of the timings
        layer = attribution.gradcam_layer(base, settings["gradcam_min_cells"])
        x = preprocess(arch, images, args.image_size)
        started = time.perf_counter()
        attribution.gradcam(base, head, x, predicted, size=side, layer=layer)
        gradcam = (time.perf_counter() - started) / args.images
        started = time.perf_counter()
        found = attribution.occlusion(
            predict, images, predicted, patch=patch, stride=stride, batch_size=per_call
        )
        occlusion = (time.perf_counter() - started) / args.images
        row = {
            "architecture": name,
            "image_size": args.image_size,
            "gradcam_layer": layer.name,
            "occlusion_positions": int(np.prod(found.cells_shape)),
            "gradcam_s_per_image": round(gradcam, 3),
            "occlusion_s_per_image": round(occlusion, 3),
            "cpu": cpu_label(),
        }
        say(
            f"{name} at {args.image_size} px: Grad-CAM {gradcam:.3f} s/image ({layer.name}), "
            f"occlusion {occlusion:.3f} s/image ({row['occlusion_positions']} positions) "
            f"[{row['cpu']}]"
        )
        emit("saliency_size", row)


if __name__ == "__main__":
    main()
