import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from cxr import config as cxr_config  # noqa: E402
from cxr.errors import CxrError  # noqa: E402
from cxr.protocols import RUN_NAME  # noqa: E402

# The dataset's overrides, then what the user wrote over them (--configfile files, then
# --config; the workflow's own config.yaml holds defaults, wherever it is given from), the
# schema (defaults filled in), the cross-field checks: a bad setting stops here, before any
# job, naming its key.
cli_files = list(workflow.config_settings.configfiles)
user_settings = cxr_config.user_settings(
    cli_files,
    workflow.config_settings.config,
    defaults=[
        Path(workflow.basedir) / "config.yaml",
        *(path for path in workflow.configfiles if path not in cli_files),
    ],
)
try:
    resolved, PROTOCOLS = cxr_config.load(
        config,
        user_settings,
        schema=Path(workflow.basedir) / "rules" / "config.schema.yaml",
    )
except CxrError as error:
    raise WorkflowError(str(error))
for line in cxr_config.replaced_overrides(config, user_settings):
    logger.info(line)
config.update(resolved)

DATASET = cxr_config.dataset(config)
SOURCES = DATASET["sources"]
ARCHITECTURES = config["training"]["architectures"]
SEEDS = config["training"]["seeds"]
USE_IMAGENET = config["training"]["weights"] == "imagenet"
AUDIT_ARCHITECTURE = config["audit"]["architecture"] or ARCHITECTURES[0]
PRIMARY = config["protocols"]["primary"]

# The results layout, written once: rules name these patterns, scripts get the paths as named
# inputs and outputs, and nothing rebuilds a path from a pattern elsewhere.
CURATED = "results/curated"
SHARDS = "results/shards"
FEATURES = "results/features/{arch}"
SPLITS = "results/{protocol}/splits"
MODEL = "results/{protocol}/models/{arch}/{run}"
EVAL = "results/{protocol}/eval/{arch}/{run}"
EVAL_SUMMARY = "results/{protocol}/eval/summary.json"
AUDIT = "results/audit"
COMPARISON = "results/protocols/comparison.json"
LEARNING_CURVE = "results/{protocol}/eval/learning_curve"
REPORT = "results/report.html"


localrules:
    generate_synthetic_data,
    fetch_source,
    fetch_weights,


wildcard_constraints:
    arch="[A-Za-z0-9_]+",
    run=RUN_NAME,
    protocol="|".join(PROTOCOLS),
    source="[A-Za-z0-9_-]+",


def source_inputs(wildcards=None):
    """What curation reads: generated or downloaded roots, or the user's local copies."""
    if "synthetic" in DATASET:
        return ["resources/synthetic/.complete"]
    inputs = []
    for name, spec in SOURCES.items():
        if "download" in spec:
            inputs.append(f"resources/sources/{name}.complete")
        else:
            inputs.append(spec["root"])
    return inputs


# Settings that shape one architecture's base and its runs. The lists of architectures and
# seeds (and the jobs' resources) are left out: adding an architecture must not change, hence
# rerun, the others.
PER_JOB_TRAINING = {
    k: v
    for k, v in config["training"].items()
    if k
    not in (
        "weights_mirror",
        "require_gpu",
        "architectures",
        "seeds",
        "extra_architectures",
        "threads",
        "mem_mb",
        "runtime",
        "gpus",
        "saved_base_check",
    )
}


def job_training(arch, protocol=None):
    """The training settings of one architecture's jobs (its own extra_architectures entry
    only), with a protocol's head settings over them."""
    extra = config["training"]["extra_architectures"]
    head = PROTOCOLS[protocol].training if protocol else {}
    return {
        **PER_JOB_TRAINING,
        **head,
        "extra_architectures": {arch: extra[arch]} if arch in extra else {},
    }


def base_training(wildcards):
    """What the base and its features depend on: not the head's settings."""
    training = job_training(wildcards.arch)
    return {
        k: training[k]
        for k in (
            "image_size",
            "batch_size",
            "weights",
            "onednn",
            "extra_architectures",
        )
    }


def run_params(wildcards):
    run = PROTOCOLS[wildcards.protocol].run(wildcards.run)
    return {"name": run.name, "seed": run.seed, "train_fraction": run.train_fraction}


def weights_input(wildcards):
    if not USE_IMAGENET:
        return []
    return [f"resources/weights/{wildcards.arch}.h5"]


def model_file(wildcards):
    """The checkpoint that evaluation reads (evaluation.checkpoint)."""
    name = (
        "model.keras" if config["evaluation"]["checkpoint"] == "final" else "best.keras"
    )
    return os.path.join(MODEL.format(**wildcards), name)


def protocol_runs(protocol, pattern):
    """`pattern` filled for every architecture and run of `protocol`."""
    return [
        pattern.format(protocol=protocol, arch=arch, run=run.name)
        for arch in ARCHITECTURES
        for run in PROTOCOLS[protocol].runs()
    ]


def compared_runs(pattern):
    """`pattern` for every run of the protocols the reproduction table compares."""
    names = [p for p in dict.fromkeys(("article", PRIMARY)) if p in PROTOCOLS]
    return [path for name in names for path in protocol_runs(name, pattern)]


def protocol_facts(protocol):
    return {
        "description": protocol.description,
        "seeds": list(protocol.seeds),
        "train_fractions": list(protocol.train_fractions or []),
        "training": protocol.training,
        "runs": len(protocol.runs()),
    }


def learning_curve_protocols():
    return [name for name, p in PROTOCOLS.items() if p.train_fractions is not None]


def final_outputs():
    return [
        f"{CURATED}/images.csv",
        *(EVAL_SUMMARY.format(protocol=p) for p in PROTOCOLS),
        *(
            f"{LEARNING_CURVE.format(protocol=p)}.png"
            for p in learning_curve_protocols()
        ),
        COMPARISON,
        f"{AUDIT}/leakage.json",
        REPORT,
    ]


def report_templates():
    """Templates and styles: editing one reruns only the report."""
    root = Path(workflow.basedir) / "report"
    return sorted(
        str(p) for p in root.glob("*") if p.suffix in {".j2", ".css", ".html"}
    )
