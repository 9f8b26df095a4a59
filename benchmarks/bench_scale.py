"""Benchmark 4: the data half (curate_images, split_protocol for each protocol, write_shards) on
1x, 10x, 50x the embedded synthetic data set: wall time and peak memory per size.

For each factor the synthetic generator's patient counts and the healthy sample size
(`sources.kermany.sample`, 70 at 1x) are multiplied (healthy patients capped at the generator's
1,499, so 50x gives about 45x the images: the table gives the real counts), the images are
generated first (not timed: it is the data set, not the workflow), then
`snakemake --cores 2 --until write_shards split_protocol` is timed (the shards hold every curated
image once; each protocol's split is a table beside them).
Memory: the peak of the summed RSS of Snakemake and all its children (psutil, sampled every
50 ms), the largest single process, and each rule's max_rss from Snakemake's benchmark files
(split_protocol has none: its time comes from Snakemake's log, 1 s resolution).
Time should grow about linearly with the images; memory should stay about flat (images are
streamed, never all held at once).
"""

import argparse
import shutil
from pathlib import Path

from common import (
    OUT,
    cpu_label,
    emit,
    log_durations,
    repo_config,
    rule_benchmarks,
    say,
    snakemake,
    write_config,
)

from cxr.io import read_json

DATA_RULES = ("curate_images", "split_protocol", "write_shards")
HEALTHY_PATIENTS_MAX = 1499  # the synthetic generator's limit (Kermany-style IM-0001..IM-1499)


def scaled_config(factor: int) -> dict:
    """Overrides that multiply the synthetic data set by `factor`."""
    dataset = repo_config()["datasets"]["synthetic"]
    synthetic = dataset["synthetic"]
    counts = {
        key: synthetic[key] * factor
        for key in ("n_disease_patients", "n_healthy_patients", "n_external_patients")
    }
    # cxr.synthetic names healthy patients IM-0001..IM-1499, drawn without replacement.
    counts["n_healthy_patients"] = min(counts["n_healthy_patients"], HEALTHY_PATIENTS_MAX)
    sample = dataset["sources"]["kermany"]["sample"] * factor
    return {
        "dataset": "synthetic",
        "datasets": {
            "synthetic": {"synthetic": counts, "sources": {"kermany": {"sample": sample}}}
        },
    }


def run_factor(root: Path, factor: int, cores: int) -> dict:
    workdir = root / f"x{factor}"
    shutil.rmtree(workdir, ignore_errors=True)
    config = write_config(root / f"x{factor}.yaml", scaled_config(factor))
    generate = snakemake(workdir, "--until", "generate_synthetic_data", configs=(config,),
                         cores=cores)  # fmt: skip
    run = snakemake(workdir, "--until", *DATA_RULES, configs=(config,), cores=cores,
                    sample_memory=True)  # fmt: skip
    flow = read_json(workdir / "results" / "curated" / "flow.json")
    manifest = read_json(workdir / "results" / "shards" / "manifest.json")
    images = sum(shard["count"] for shard in manifest["shards"])
    inputs = flow["included"] + flow["excluded"]
    rules = rule_benchmarks(workdir)
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    logged = log_durations(logs[-1].read_text()) if logs else None
    return {
        "factor": factor,
        "input_records": inputs,
        "curated_images": flow["included"],
        "images_in_shards": images,
        "generate_seconds": round(generate["seconds"], 1),
        "seconds": round(run["seconds"], 1),
        "peak_rss_tree_mb": run["peak_rss_tree_mb"],
        "peak_rss_single_mb": run["peak_rss_single_mb"],
        "rules": {
            **{
                row["rule"]: {"s": row["s"], "max_rss_mb": row["max_rss_mb"]}
                for _, row in rules.iterrows()
                if row["rule"] in DATA_RULES
            },
            **split_seconds(logged),
        },
    }


def split_seconds(logged) -> dict:
    """split_protocol's jobs and seconds summed, from Snakemake's log (it has no benchmark)."""
    if logged is None:
        return {}
    split = logged[logged["rule"] == "split_protocol"]
    return {"split_protocol": {"s": float(split["s"].sum()), "jobs": len(split), "source": "log"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--factors",
        type=int,
        nargs="+",
        default=[1, 10, 50],
        help="multiples of the embedded synthetic set (default: %(default)s)",
    )
    parser.add_argument("--cores", type=int, default=2, help="(default: %(default)s)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=OUT / "scratch" / "scale",
        help="scratch directory (default: %(default)s)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each size's scratch directory (default: remove it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = []
    for factor in args.factors:
        say(f"data half at {factor}x ...")
        result = run_factor(args.workdir, factor, args.cores)
        base = results[0] if results else result
        result["seconds_per_1000_images"] = round(
            1000 * result["seconds"] / result["images_in_shards"], 2
        )
        result["time_ratio_vs_first"] = round(result["seconds"] / base["seconds"], 2)
        # Fixed costs (Snakemake start, TensorFlow import) dominate small sizes: the marginal
        # cost per image is what must stay constant for time to grow linearly.
        extra = result["images_in_shards"] - base["images_in_shards"]
        result["marginal_seconds_per_1000_images_vs_first"] = (
            round(1000 * (result["seconds"] - base["seconds"]) / extra, 2) if extra else None
        )
        result["images_ratio_vs_first"] = round(
            result["images_in_shards"] / base["images_in_shards"], 2
        )
        result["peak_rss_ratio_vs_first"] = round(
            result["peak_rss_tree_mb"] / base["peak_rss_tree_mb"], 2
        )
        results.append(result)
        say(
            f"{factor}x: {result['images_in_shards']} images in shards, {result['seconds']} s "
            f"({result['seconds_per_1000_images']} s per 1000 images), peak RSS "
            f"{result['peak_rss_tree_mb']:.0f} MB (tree) / {result['peak_rss_single_mb']:.0f} MB "
            f"(largest process); x{result['peak_rss_ratio_vs_first']} memory for "
            f"x{result['images_ratio_vs_first']} images; rules {result['rules']} "
            f"[{cpu_label()}]"
        )
        emit("scale", {"cores": args.cores, **result})
        if not args.keep:
            shutil.rmtree(args.workdir / f"x{factor}", ignore_errors=True)


if __name__ == "__main__":
    main()
