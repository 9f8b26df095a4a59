"""Benchmark 5: incremental reruns of the embedded default.

The workflow's files (Snakefile, config.yaml, rules/, scripts/, report/, envs/) are copied to
a scratch directory and run from there, so that a report template can really be edited without
touching the repository (Snakemake reruns on content, not on mtime alone: it compares input
checksums, so moving a template's mtime without editing it reruns nothing). Steps:

1. a full run from an empty directory (timed, for reference), then `-n` (should plan nothing);
2. the copy's report/style.css gets a new mtime only: `-n` (expect nothing);
3. a CSS comment is appended to it: `-n`, then the rerun, timed (target: seconds, no training
   job);
4. one architecture is added to `training.architectures` (extra config file): `-n` (target:
   extract_features for it, its train_models and evaluate_models jobs (one each: every run of
   every protocol), its saliency maps, plus what reads every architecture: each protocol's
   summarise_evaluations, the learning-curve plots, compare_protocols and render_report;
   nothing of the other
   architectures, no border probe), then the run, timed. The planned jobs per rule are
   compared with those counts, computed from the protocols of the config.
"""

import argparse
import collections
import os
import shutil
import time
from pathlib import Path

from common import (
    OUT,
    REPO,
    cpu_label,
    effective_config,
    emit,
    planned_jobs,
    say,
    snakemake,
    write_config,
)

from cxr.protocols import protocols_to_run

TRAINING_RULES = ("extract_features", "train_models", "evaluate_models", "probe_borders")
WORKFLOW_FILES = ("Snakefile", "config.yaml", "rules", "scripts", "report", "envs")


def copy_workflow(target: Path) -> Path:
    """A snapshot of the repo's workflow files under `target`; returns its Snakefile."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    return target / "Snakefile"


def show(title: str, jobs: list[dict]) -> None:
    say(f"{title}: {len(jobs)} job(s)")
    for job in jobs:
        say(f"  {job['job']}  <- {job['reason'][:200]}")


def plan(run_dir: Path, snakefile: Path, cores: int, configs: tuple[Path, ...] = ()) -> list:
    output = snakemake(run_dir, "-n", configs=configs, cores=cores, snakefile=snakefile)
    return planned_jobs(output["output"])


def run(run_dir: Path, snakefile: Path, cores: int, configs: tuple[Path, ...] = ()) -> dict:
    result = snakemake(run_dir, configs=configs, cores=cores, snakefile=snakefile)
    ran = planned_jobs(result["output"])
    return {"seconds": round(result["seconds"], 1), "ran": [j["job"] for j in ran]}


def names(jobs: list[dict]) -> list[str]:
    return [j["job"] for j in jobs]


def expected_after_adding(config: dict) -> dict[str, int]:
    """Jobs per rule that adding one architecture should plan, from the config's protocols."""
    protocols = protocols_to_run(config)
    saliency = config["saliency"]
    expected = {
        "extract_features": 1,
        # One job each fits, or evaluates, every run of every protocol of the architecture.
        "train_models": 1,
        "evaluate_models": 1,
        "explain_model": (
            (
                len(protocols[config["protocols"]["primary"]].runs())
                if saliency["runs"] == "all"
                else 1
            )
            if saliency["enabled"]
            else 0
        ),  # fmt: skip
        "summarise_evaluations": len(protocols),
        "plot_learning_curve": sum(p.train_fractions is not None for p in protocols.values()),
        "compare_protocols": 1,
        "render_report": 1,
    }
    if config["training"]["weights"] == "imagenet":
        expected["fetch_weights"] = 1
    return {rule: count for rule, count in expected.items() if count}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=OUT / "scratch" / "incremental",
        help="scratch directory, emptied first (default: %(default)s)",
    )
    parser.add_argument(
        "--add", default="MobileNetV2", help="architecture to add (default: %(default)s)"
    )
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="only plan the added architecture's jobs (-n), do not run them",
    )
    parser.add_argument("--cores", type=int, default=2, help="(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    snakefile = copy_workflow(args.workdir / "workflow")
    run_dir = args.workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    say(f"full run of the embedded default from a copy of the workflow in {args.workdir} ...")
    first = run(run_dir, snakefile, args.cores)
    say(f"full run: {first['seconds']} s [{cpu_label()}]")
    before = plan(run_dir, snakefile, args.cores)
    show("no change", before)

    style = snakefile.parent / "report" / "style.css"
    now = time.time()
    os.utime(style, (now, now))
    touched = plan(run_dir, snakefile, args.cores)
    show("style.css mtime moved, content unchanged", touched)

    with open(style, "a", encoding="utf-8") as handle:
        handle.write("\n/* edited by benchmarks/bench_incremental.py */\n")
    edited = plan(run_dir, snakefile, args.cores)
    show("style.css edited", edited)
    rerun = run(run_dir, snakefile, args.cores)
    say(f"rerun after the edit: {rerun['seconds']} s, ran {rerun['ran']} [{cpu_label()}]")

    current = effective_config()["training"]["architectures"]
    added_config = write_config(
        args.workdir / "add_architecture.yaml",
        {"training": {"architectures": [*current, args.add]}},
    )
    added = plan(run_dir, snakefile, args.cores, (added_config,))
    show(f"{args.add} added", added)
    training_jobs = [j["job"] for j in added if j["rule"] in TRAINING_RULES]
    others = [job for job in training_jobs if f"arch={args.add}" not in job]
    expected = expected_after_adding(effective_config((added_config,)))
    counts = dict(collections.Counter(j["rule"] for j in added))
    say(
        f"planned per rule {counts}; expected {expected}: "
        f"{'as expected' if counts == expected else 'NOT as expected'}; jobs of other "
        f"architectures: {others or 'none'} [{cpu_label()}]"
    )
    added_run = None if args.plan_only else run(run_dir, snakefile, args.cores, (added_config,))
    if added_run:
        say(f"run after adding {args.add}: {added_run['seconds']} s [{cpu_label()}]")

    emit(
        "incremental",
        {
            "cores": args.cores,
            "first_run_seconds": first["seconds"],
            "planned_without_change": names(before),
            "template_mtime_only": {"planned": names(touched)},
            "template": {
                "method": "CSS comment appended to the workflow copy's report/style.css",
                "planned": names(edited),
                "reasons": {j["job"]: j["reason"] for j in edited},
                "ran": rerun["ran"],
                "seconds": rerun["seconds"],
                "training_jobs_rerun": [j["job"] for j in edited if j["rule"] in TRAINING_RULES],
            },
            "add_architecture": {
                "added": args.add,
                "planned": names(added),
                "reasons": {j["job"]: j["reason"] for j in added},
                "other_architectures_jobs": others,
                "planned_per_rule": counts,
                "expected_per_rule": expected,
                **({"seconds": added_run["seconds"], "ran": added_run["ran"]} if added_run else {}),
            },
        },
    )


if __name__ == "__main__":
    main()
