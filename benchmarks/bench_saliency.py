"""6. Cost of the saliency maps (issue 14): seconds per image per architecture for Grad-CAM and
occlusion, and their share of the whole run. Runs cxr.jobs.explain_job, as rule explain_model
does, on the primary protocol's first run of each architecture in a finished workflow
directory (`bench_workflow.py` leaves one under benchmarks/out/scratch/), writing into
benchmarks/out/saliency/, never into that directory; the share divides the explain jobs'
seconds by the sum of every rule's job seconds (Snakemake's benchmark files there) plus them.

    .venv/bin/python benchmarks/bench_saliency.py --workdir benchmarks/out/scratch/workflow-default
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import OUT, cpu_label, effective_config, emit, rule_benchmarks, say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="a finished workflow run")
    parser.add_argument("--architectures", nargs="+", default=None)
    parser.add_argument("--protocol", default="patient")
    parser.add_argument("--run", default="seed0")
    args = parser.parse_args()
    config = effective_config()
    training, saliency = config["training"], config["saliency"]
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if training["onednn"] else "0"
    from cxr.jobs import explain_job

    workdir = args.workdir.resolve()
    out_dir = OUT / "saliency"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # the curated table's image paths are relative to the run's directory
    synthetic = Path("resources/synthetic")
    rows = []
    for arch in args.architectures or training["architectures"]:
        run_dir = f"results/{args.protocol}/eval/{arch}/{args.run}"
        started = time.perf_counter()
        result = explain_job(
            inputs={
                "model": f"results/{args.protocol}/models/{arch}/{args.run}/model.keras",
                "base": f"results/features/{arch}/base.keras",
                "manifest": "results/shards/manifest.json",
                "predictions": f"{run_dir}.predictions.csv",
                "images": "results/curated/images.csv",
                "synthetic": [str(synthetic)] if (synthetic / "ground_truth.csv").exists() else [],
            },
            outputs={
                "statistics": str(out_dir / f"{arch}.saliency.json"),
                "maps": str(out_dir / f"{arch}.saliency.npz"),
                "cost": str(out_dir / f"{arch}.saliency.cost.json"),
            },
            params={
                "architecture": arch, "protocol": args.protocol, "run": {"name": args.run},
                "training": {**training, "extra_architectures": {}},
                "saliency": saliency, "border_fraction": config["audit"]["border_fraction"],
                "threshold": config["evaluation"]["threshold"],
                "n_boot": config["evaluation"]["bootstrap"], "seed": config["seed"],
                "labels": config["labels"],
                "ground_truth": str(synthetic / "ground_truth.csv"),
            },
            threads=training["threads"],
        )  # fmt: skip
        job = time.perf_counter() - started
        images = len(result["images"])
        seconds = result["seconds"]
        row = {"architecture": arch, "images": images, "job_s_without_startup": round(job, 1)}
        row |= {f"{m}_s_per_image": round(s / images, 4) for m, s in seconds.items()}
        rows.append(row)
        say(f"{arch}: {images} images; Grad-CAM {row['gradcam_s_per_image']:.3f} s/image, "
            f"occlusion {row['occlusion_s_per_image']:.3f} s/image; on {cpu_label()}")  # fmt: skip
    jobs = rule_benchmarks(workdir)
    others = float(jobs.loc[jobs["rule"] != "explain_model", "s"].sum())
    explain = sum(r["job_s_without_startup"] for r in rows)
    share = explain / (others + explain) if others else None
    say(
        f"explain jobs {explain:.0f} s (without TensorFlow's start-up) against {others:.0f} s "
        f"of the run's other jobs: {share:.1%} of the job time; on {cpu_label()}"
    )
    emit("saliency", {"workdir": str(workdir), "rows": rows, "other_jobs_s": others,
                      "share_of_job_time": share})  # fmt: skip


if __name__ == "__main__":
    main()
