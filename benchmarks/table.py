"""Print the latest benchmark figures (benchmarks/out/*.jsonl) as Markdown tables, with the
targets of issues 7 and 10 and whether each is met, and the CPU each was measured on; with each
end-to-end run, the baseline's job layout beside it where `bench_workflow.py --baseline` ran
(issue 20). Records written before the protocols layout (issue 10) are marked so."""

import argparse
import json
from pathlib import Path

from common import LAYOUT, OUT, cpu_label


def latest(path: Path, key: str | None) -> list[dict]:
    """The last record of a JSON-lines file, or the last one per value of `key`."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if key is None:
        return records[-1:]
    last: dict = {}
    for record in records:
        last[record.get(key)] = record
    return list(last.values())


def yes(ok: bool) -> str:
    return "met" if ok else "**missed**"


def measured_on(r: dict) -> str:
    """The CPU of a record, and whether it predates the protocols layout."""
    when = "" if r.get("layout") == LAYOUT else "; before the protocols layout"
    return f"CPU: {cpu_label(r['machine'])}{when}"


def training(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    lines = [
        f"### 1. Frozen training, the article's way vs ours ({r0['data']}, {r0['n_train']} + "
        f"{r0['n_val']} images, {r0['image_size']} px, {r0['epochs']} epochs, batch "
        f"{r0['batch_size']}, {r0['threads']} threads, weights {r0.get('weights', 'random')})",
        "",
        measured_on(r0),
        "",
        "| base | article's way (s) | ours (s) | ours: base once / head epochs (s) | speedup "
        "| BatchNorm pass (s) | speedup without it | head weights identical "
        "| in-memory full model (s) | target >= 10x |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        memory = (
            f"{r['seconds_in_memory']} ({r['speedup_vs_in_memory']}x; identical: "
            f"{r['in_memory_head_weights_identical']})"
            if "seconds_in_memory" in r
            else "not run"
        )
        like_for_like = r.get("speedup_without_recalibration", r["speedup"])
        verdict = yes(like_for_like >= 10 and r["head_weights_identical"])
        if r["speedup"] < 10 <= like_for_like:
            verdict += " without the BatchNorm pass; missed with it"
        lines.append(
            f"| {r['architecture']} | {r['seconds_article']} | {r['seconds_ours']} | "
            f"{r['ours_seconds_features']} / {r['ours_seconds_fit']} | {r['speedup']}x | "
            f"{r.get('seconds_recalibration', '')} | {like_for_like}x | "
            f"{r['head_weights_identical']} | {memory} | {verdict} |"
        )
    return lines


def throughput(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    r0 = rows[0]
    peak = r0["peak_inputs"]
    slowest = min(r["forward_images_per_s"] for r in rows)
    lines = [
        f"### 2. Closeness to the hardware limit ({r0['data']} shards at {r0['shard_size']} px "
        f"read at {r0['image_size']} px, batch {r0['batch_size']}, {r0['threads']} threads)",
        "",
        measured_on(r0),
        "",
        f"Peak fp32: {peak['cores']} cores x {peak['clock_ghz']} GHz x "
        f"{peak['fp32_flop_per_cycle']} FLOP/cycle = {r0['peak_gflops']} GFLOP/s "
        f"({r0['machine']['fp32_flop_per_cycle_source']}).",
        "",
        "A GEMM (fp32 matrix product through TensorFlow, same threads) is timed right before "
        "each forward timing, as a ceiling measured under the same load; its best figure implies "
        f"the cores run at >= {max(r.get('clock_ghz_implied_by_gemm', 0) for r in rows)} GHz "
        f"(the nominal clock the VM reports: {peak['clock_ghz']} GHz).",
        "",
        "| base | GFLOP/image | forward images/s | achieved GFLOP/s | of nominal peak "
        "| GEMM alongside (GFLOP/s) | of that GEMM |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['architecture']} | {r['gflop_per_image']} | {r['forward_images_per_s']} | "
            f"{r['achieved_gflops']} | {r['fraction_of_peak']:.0%} | "
            f"{r.get('gemm_gflops', '')} | {r.get('fraction_of_gemm', float('nan')):.0%} |"
        )
    pipe = r0["pipeline_images_per_s"]
    with_input = ", ".join(
        f"{r['architecture']} {r['pipeline_with_preprocess_images_per_s']:.0f}" for r in rows
    )
    lines += [
        "",
        f"Input pipeline alone (read + decode + resize + batch): {pipe:.0f} images/s; with "
        f"the base's input made (RGB, preprocess_input): {with_input} images/s. "
        f"That is {pipe / slowest:.0f}x the slowest base (target >= 5x: "
        f"{yes(pipe / slowest >= 5)}).",
    ]
    return lines


def workflow(rows: list[dict], comparisons: list[dict] = ()) -> list[str]:
    beside = {c["variant"]: c for c in comparisons}
    return [
        line
        for r in rows
        for line in [*workflow_run(r), *job_layouts(beside.get(r.get("variant"))), ""]
    ][:-1]


LAYOUT_HEADER = (
    "| layout (commit) | wall s | jobs | TF processes | TF processes per architecture (max) "
    "| start-up share | new / old wall time | CPU |"
)


def layout_table(old: dict, new: dict) -> list[str]:
    """Two runs of bench_workflow.py (their records, or layout_figures of them) side by side:
    the baseline's job layout first, then this checkout's."""
    lines = [LAYOUT_HEADER, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r, ratio in ((old, ""), (new, f"{new['wall_seconds'] / old['wall_seconds']:.2f}")):
        tf = r["tf_processes"]
        lines.append(
            f"| {r['head_layout']} ({r['commit']}) | {r['wall_seconds']:.1f} | {r['jobs']} | "
            f"{tf['total']} | {tf['max_per_architecture']} | {r['startup_share']:.0%} | "
            f"{ratio} | {r['cpu']} |"
        )
    return lines


def job_layouts(c: dict | None) -> list[str]:
    """Issue 20: the baseline's job layout beside this checkout's, measured in one session."""
    if c is None:
        return []
    old, new = c["baseline"], c["new"]
    return [
        "",
        f"#### Job layout: {old['commit']} beside {new['commit']} ({c['variant']}, "
        f"`--cores {c['cores']}`, one session)",
        "",
        *layout_table(old, new),
        "",
        f"Jobs: Snakemake's count, `all` included. Start-up share: TensorFlow processes x "
        f"{new['tf_import_seconds']} s (TensorFlow's import in a fresh Python, measured in the "
        "session) over the seconds of all jobs.",
    ]


def workflow_run(r: dict) -> list[str]:
    lines = [
        f"### 3. End to end: `snakemake --cores {r['cores']}`, {r.get('variant', '')} "
        f"({', '.join(r['architectures'])}, {r['image_size']} px, {r['epochs']} epochs)",
        "",
        measured_on(r),
        "",
        f"Wall time {r['wall_seconds']} s from an empty directory (target < 300 s: "
        f"{yes(r['wall_seconds'] < 300)}); the jobs took {r['job_seconds']} s in all.",
    ]
    if "forward_passes" not in r:
        return [*lines, "", "(Recorded before the protocols layout: rerun `make bench-workflow`.)"]
    if "tf_processes" in r:
        tf = r["tf_processes"]
        per_arch = ", ".join(f"{a} {n}" for a, n in tf["per_architecture"].items())
        lines += [
            "",
            f"{r['jobs']} jobs (Snakemake's count, `all` included; commit {r['commit']}, heads "
            f"{r['head_layout']}), {tf['total']} of them TensorFlow processes ({per_arch}; "
            f"{tf['without_architecture']} of no architecture): start-up "
            f"{r['startup_share']:.0%} of the job time.",
        ]
    lines += [
        "",
        "| rule | jobs | s | max RSS (MB) | from |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for rule, x in sorted(r["rules"].items(), key=lambda item: -item[1]["s"]):
        rss = "" if x["max_rss_mb"] is None else f"{x['max_rss_mb']:.0f}"
        lines.append(f"| {rule} | {x['jobs']} | {x['s']} | {rss} | {x['source']} |")
    shares = r["job_seconds_shares"]
    largest = max(shares, key=shares.get)
    lines += [
        "",
        "Where the job time goes: "
        + ", ".join(f"{k} {v:.0f} s ({v / r['job_seconds']:.0%})" for k, v in shares.items())
        + f". TensorFlow start-up is {r['tf_import_seconds']} s per process x {r['tf_jobs']} "
        f"processes. Largest share: {largest} (target: the base passes, "
        f"{yes(largest.startswith('base passes'))}).",
        "",
        *forward_passes(r),
        "",
        *heads(r),
    ]
    return lines


def forward_passes(r: dict) -> list[str]:
    """Issue 10: base forward passes per image, and the wall time against them."""
    passes = r["forward_passes"]
    probe = r["probe_retimed"]
    lines = [
        f"#### Base forward passes per image ({r.get('variant', '')}; target: "
        f"{passes['target']}; border probe on {passes['audit_architecture']}, weights "
        f"{passes['probe_weights']})",
        "",
        measured_on(r),
        "",
        "| base | images | feature pass | BatchNorm pass | probe's blanked pass "
        "| probe's BatchNorm | saved-base check | jobs on images | passes without BatchNorm "
        "| target | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for a in passes["per_architecture"]:
        lines.append(
            f"| {a['architecture']} | {a['images']} | {a['feature_passes']:.2f} | "
            f"{a['recalibration_passes']:.2f} | {a['probe_passes']:.2f} | "
            f"{a['probe_recalibration_passes']:.2f} | {a['check_passes']:.2f} | "
            f"{a['image_job_passes']:.2f} | {a['inference_passes']:.2f} | "
            f"{a['target_passes']:.2f} | {a['verdict']} |"
        )
    features = ", ".join(
        f"{a['architecture']} {a['seconds_features']:.1f}" for a in passes["per_architecture"]
    )
    bases = ", ".join(
        f"{a['architecture']} {a['seconds_base']:.1f}" for a in passes["per_architecture"]
    )
    lines += [
        "",
        f"Wall time {r['wall_seconds']} s against the unavoidable forward passes "
        f"{r['unavoidable_forward_seconds']} s (feature passes: {features}; the probe's blanked "
        f"pass over {probe['images']} images, re-timed: {probe['seconds_pass']}): "
        f"**{r['wall_over_unavoidable']}x**. BatchNorm passes (seconds_base, build included: "
        f"{bases}; the probe's, re-timed: {probe['seconds_base']}) {r['batchnorm_seconds']} s; "
        f"with them {r['wall_over_unavoidable_and_batchnorm']}x.",
    ]
    return lines


def heads(r: dict) -> list[str]:
    """Issues 10 and 20: the heads' runs and jobs per protocol, and what they cost. Where a job
    is every run of one architecture (head_jobs), its seconds are not split by protocol."""
    rules = r.get("head_jobs")
    train = rules["train"]["rule"] if rules else "train_model"
    evaluate = rules["evaluate"]["rule"] if rules else "evaluate_model"
    lines = [
        f"#### Heads per protocol ({r.get('variant', '')})",
        "",
        measured_on(r),
        "",
        f"| protocol | runs | head epochs (s) | {train} jobs | s | {evaluate} jobs | s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    runs, fit = 0, 0.0
    for protocol, h in r["heads"].items():
        n = h.get("runs", h["train_jobs"])  # before issue 20 a job was one run
        runs, fit = runs + n, fit + h["head_fit_seconds"]
        jobs = (
            " | | | |"
            if h["train_jobs"] is None
            else f" {h['train_jobs']} | {h['train_seconds']} | {h['evaluate_jobs']} | "
            f"{h['evaluate_seconds']} |"
        )
        lines.append(f"| {protocol} | {n} | {h['head_fit_seconds']} |{jobs}")
    if rules:
        total = {role: (rules[role]["jobs"], rules[role]["s"]) for role in ("train", "evaluate")}
    else:
        total = {
            role: (
                sum(h[f"{role}_jobs"] for h in r["heads"].values()),
                sum(h[f"{role}_seconds"] for h in r["heads"].values()),
            )
            for role in ("train", "evaluate")
        }
    lines.append(
        f"| all | {runs} | {fit:.1f} | {total['train'][0]} | {total['train'][1]:.1f} | "
        f"{total['evaluate'][0]} | {total['evaluate'][1]:.1f} |"
    )
    if rules and any(h["train_jobs"] is None for h in r["heads"].values()):
        per_arch = "; ".join(
            f"{rules[role]['rule']} "
            + ", ".join(f"{a} {s}" for a, s in rules[role]["per_architecture"].items())
            for role in ("train", "evaluate")
        )
        lines += [
            "",
            f"One {train} job and one {evaluate} job per architecture serve every protocol: "
            f"their seconds are in the `all` row (per architecture, s: {per_arch}).",
        ]
    return lines


def scale(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: r["factor"])
    lines = [
        "### 4. Scale: the data half (curate, split per protocol, shards), `--cores 2`",
        "",
        measured_on(rows[-1]),
        "",
        "| size | input records | images in shards | s | curate / split, all protocols (log) / "
        "shards (s) | marginal s per 1000 images vs the first size | peak RSS, all processes "
        "(MB) | largest process (MB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rules = r["rules"]
        per_rule = " / ".join(
            str(rules.get(name, {}).get("s", "?"))
            for name in ("curate_images", "split_protocol", "write_shards")
        )
        marginal = r.get("marginal_seconds_per_1000_images_vs_first") or ""
        lines.append(
            f"| {r['factor']}x | {r['input_records']} | {r['images_in_shards']} | {r['seconds']} "
            f"| {per_rule} | {marginal} | {r['peak_rss_tree_mb']:.0f} | "
            f"{r['peak_rss_single_mb']:.0f} |"
        )
    top, bottom = rows[-1], rows[0]
    ratio = top["peak_rss_tree_mb"] / bottom["peak_rss_tree_mb"]
    lines += [
        "",
        f"Peak memory at {top['factor']}x is {ratio:.2f}x that at {bottom['factor']}x "
        f"(target <= 1.5x at 50x: {yes(ratio <= 1.5 and top['factor'] >= 50)}).",
    ]
    return lines


def incremental(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    r = rows[-1]
    t, a = r["template"], r["add_architecture"]
    touched = r["template_mtime_only"]["planned"]
    lines = [
        "### 5. Incremental reruns (a copy of the workflow, embedded default, "
        f"`--cores {r['cores']}`; the first full run took {r['first_run_seconds']} s)",
        "",
        measured_on(r),
        "",
        "| change | jobs planned (`-n`) | rerun (s) | target |",
        "| --- | --- | ---: | --- |",
        f"| none | {', '.join(r['planned_without_change']) or 'none'} | | |",
        f"| report/style.css mtime only | {', '.join(touched) or 'none'} | | |",
        f"| report template edited ({t['method']}) | {', '.join(t['planned']) or 'none'} | "
        f"{t['seconds']} | {yes(not t['training_jobs_rerun'] and t['seconds'] < 60)} |",
        f"| add {a['added']} to training.architectures | {planned_rules(a)} | "
        f"{a.get('seconds', 'not run')} | {added_verdict(a)} |",
    ]
    return lines


def planned_rules(a: dict) -> str:
    """Jobs per rule when counted (protocols layout), else every planned job."""
    if "planned_per_rule" not in a:
        return ", ".join(a["planned"])
    return ", ".join(f"{rule} x{count}" for rule, count in a["planned_per_rule"].items())


def added_verdict(a: dict) -> str:
    ok = not a["other_architectures_jobs"]
    if "expected_per_rule" not in a:
        return yes(ok)
    as_expected = a["planned_per_rule"] == a["expected_per_rule"]
    text = yes(ok and as_expected)
    if not as_expected:
        text += f" (expected {a['expected_per_rule']})"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    sections = [
        training(latest(args.out / "training.jsonl", "architecture")),
        throughput(latest(args.out / "throughput.jsonl", "architecture")),
        workflow(
            latest(args.out / "workflow.jsonl", "variant"),
            latest(args.out / "workflow_layouts.jsonl", "variant"),
        ),
        scale(latest(args.out / "scale.jsonl", "factor")),
        incremental(latest(args.out / "incremental.jsonl", None)),
    ]
    machines = [
        json.loads(line)["machine"]
        for path in sorted(args.out.glob("*.jsonl"))
        for line in path.read_text().splitlines()[-1:]
        if line.strip()
    ]
    if machines:
        m = machines[-1]
        print(
            f"Machine of the latest figures: {m['cpu']} (vendor {m['vendor']}, family "
            f"{m['family']}, model "
            f"{m['model']}), {m['cores']} cores at {m['clock_ghz']} GHz, "
            f"{'/'.join(m['vector_flags'])}, {m['memory_gib']} GiB; Python {m['python']}, "
            f"TF_ENABLE_ONEDNN_OPTS={m['TF_ENABLE_ONEDNN_OPTS']}. Load averages when the "
            f"figures were written: {sorted({x['load_average_1min'] for x in machines})}.\n"
        )
    print("\n\n".join("\n".join(s) for s in sections if s))


if __name__ == "__main__":
    main()
