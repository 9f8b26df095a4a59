"""The self-contained HTML report: reads the workflow's outputs, derives the numbers the
templates in report/ show, and renders them with every image embedded as a data: URI.

Each section template report/<section>.html.j2 has its context builder
cxr.report.<section>.context; build_context adds the page's own keys and merges them."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

import jinja2

from cxr.io import atomic_open, read_json, read_table, sha256_file
from cxr.report import (
    caveats,
    checklist,
    data,
    expert_annotations,
    generalisation,
    learning_curve,
    marks,
    reproducibility,
    reproduction,
    results,
    saliency,
    summary,
    training,
)
from cxr.report.formatting import detectable_difference, est, num, pct, pct_est, short, width_points
from cxr.report.provenance import ProvenanceNotes
from cxr.report.reproducibility import PACKAGES, commands, git_commit, package_versions

__all__ = [
    "PACKAGES",
    "build_context",
    "commands",
    "detectable_difference",
    "environment",
    "est",
    "git_commit",
    "package_versions",
    "pct_est",
    "render",
    "sha256_file",
    "width_points",
    "write_report",
]

log = logging.getLogger(__name__)


def build_context(
    inputs: dict[str, str | list[str]],
    *,
    config: dict,
    sources: dict,
    labels: dict,
    protocols: list[dict] | None = None,
    primary: str,
    repo_dir: Path | None = None,
    image_root: Path | None = None,
    now: datetime.datetime | None = None,
    overlays: int,
) -> dict:
    """Read the workflow's outputs named in `inputs` (rule render_report's input names) and
    derive every number the templates show. Relative image paths resolve against image_root
    (default: the working directory, where Snakemake runs the script)."""
    image_root = Path.cwd() if image_root is None else Path(image_root)
    protocols = protocols or []
    labels = {"positive": labels["positive"], "negative": labels["negative"]}
    dataset = str(config.get("dataset", "unknown"))
    now = now or datetime.datetime.now(datetime.UTC)
    # The page's own keys (report.html.j2); every section reads labels and dataset too.
    context = {
        "title": config["report"]["title"],
        "generated_at": now.strftime("%Y-%m-%d %H:%M:%S %Z").strip(),
        "dataset": dataset,
        "labels": labels,
        # The provenance line under each figure and table (cxr.report.provenance).
        "prov": ProvenanceNotes(
            read_json(inputs["provenance"]) if inputs.get("provenance") else None, inputs
        ),
    }

    def add(section: dict) -> None:
        clash = sorted(context.keys() & section.keys())
        if clash:
            raise ValueError(f"report: two sections set the context key(s) {clash}")
        context.update(section)

    # Inputs that several sections read.
    images = read_table(inputs["images"])
    splits = read_table(inputs["splits"])
    split_summary = read_json(inputs["split_summary"])
    audit = read_json(inputs["audit"])
    names = [p["name"] for p in protocols]
    summaries = dict(zip(names, map(read_json, inputs.get("protocol_summaries", [])), strict=False))

    # The sections, each after those whose keys it reads.
    add(
        reproduction.context(
            comparison=read_json(inputs["comparison"]) if inputs.get("comparison") else None,
            protocols=protocols,
            primary=primary,
            repeats=next(
                (read_json(p) for p in inputs.get("repeats", []) if str(p).endswith(".json")),
                None,
            ),
            repeats_plot=next(
                (p for p in inputs.get("repeats", []) if str(p).endswith(".png")), None
            ),
        )
    )
    add(
        data.context(
            sources=sources,
            flow=read_json(inputs["flow"]),
            exclusions=read_table(inputs["exclusions"]),
            images=images,
            splits=splits,
            split_summary=split_summary,
            positive=labels["positive"],
            image_root=image_root,
            max_pixels=int(config["curation"]["max_pixels"]),
            annotation_summary=read_json(inputs["annotation_summary"])
            if inputs.get("annotation_summary")
            else None,
            annotation_exclusions=read_table(inputs["annotation_exclusions"])
            if inputs.get("annotation_exclusions")
            else None,
        )
    )
    add(training.context(inputs))
    runs = context["runs"]
    eval_summary = results.in_run_order(read_json(inputs["eval_summary"]), runs)
    add(results.context(runs=runs, eval_summary=eval_summary, labels=labels))
    add(
        generalisation.context(
            generalisation=read_json(inputs["generalisation"])
            if inputs.get("generalisation")
            else None,
            plot=inputs.get("generalisation_plot"),
            labels=labels,
        )
    )
    add(
        learning_curve.context(
            tables=inputs.get("learning_curves", []),
            plots=inputs.get("learning_curve_plots", []),
            protocols=protocols,
        )
    )
    add(
        marks.context(
            images=images,
            settings=config["marks"],
            summaries=summaries,
            removed=dict(zip(names, inputs.get("protocol_removed", []), strict=False)),
            image_root=image_root,
            max_pixels=int(config["curation"]["max_pixels"]),
        )
    )
    add(
        saliency.context(
            statistics=inputs.get("saliency", []),
            maps=inputs.get("saliency_maps", []),
            costs=inputs.get("saliency_costs", []),
            overlays=overlays,
            lungs=inputs.get("lung_masks"),
        )
    )
    add(expert_annotations.context(inputs))
    add(
        caveats.context(
            runs=runs,
            split_counts=split_summary.get("counts", {}),
            eval_summary=eval_summary,
            audit=audit,
            labels=labels,
            border_examples=inputs.get("border_examples"),
        )
    )
    add(
        summary.context(
            runs=runs,
            eval_summary=eval_summary,
            splits=splits,
            split_summary=split_summary,
            audit=audit,
            labels=labels,
            primary_summary=summaries.get(primary, {}),
            reproduction=context["reproduction"],
            small=context["small"],
            generalisation=context["generalisation"],
            repeated=context["repeated"],
        )
    )
    groups = context.pop("conclusion_groups")
    groups["look"] = groups["look"] + expert_annotations.conclusion(
        context["annotations"], context["lungs"], context["saliency"]["runs"], context["severity"]
    )
    context["findings"] = summary.findings(groups)
    # The same sentences in one list, in the findings' order (the checklist and tests read it).
    context["conclusion"] = [s for finding in context["findings"] for s in finding["sentences"]]
    add(
        reproducibility.context(
            config=config,
            dataset=dataset,
            manifest=read_json(inputs["manifest"]),
            files=[inputs[name] for name in ("images", "exclusions", "splits")],
            repo_dir=repo_dir,
        )
    )
    add(checklist.context(context, config=config, protocols=protocols, images=images))
    return context


def environment(template_dir: Path) -> jinja2.Environment:
    """Jinja2 with autoescaping on for every template, and undefined names as errors."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, est=est, pct=pct, short=short)
    # A section rendered alone (tests) has no provenance; build_context's `prov` replaces it.
    env.globals["prov"] = ProvenanceNotes(None, {})
    return env


def render(context: dict, template_dir: Path) -> str:
    return environment(Path(template_dir)).get_template("report.html.j2").render(**context)


def write_report(
    inputs: dict[str, str | list[str]],
    output: str | Path,
    *,
    config: dict,
    sources: dict,
    labels: dict,
    template_dir: str | Path,
    protocols: list[dict] | None = None,
    primary: str,
    overlays: int,
) -> None:
    """Build the context, render report.html.j2 and write `output` atomically."""
    template_dir = Path(template_dir)
    context = build_context(
        inputs, config=config, sources=sources, labels=labels, protocols=protocols,
        primary=primary, repo_dir=template_dir.parent, overlays=overlays,
    )  # fmt: skip
    html = render(context, template_dir)
    with atomic_open(output, "w", encoding="utf-8") as handle:
        handle.write(html)
    log.info("wrote %s (%d kB)", output, len(html) // 1024)
