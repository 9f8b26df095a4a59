import os
import sys
from pathlib import Path

from snakemake.utils import update_config, validate

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from cxr import config as cxr_config  # noqa: E402
from cxr.architectures import DEFAULT_ARCHITECTURES  # noqa: E402
from cxr.errors import CxrError  # noqa: E402

try:
    config.update(cxr_config.resolve(config))
except CxrError as error:
    raise WorkflowError(str(error))
# A dataset's overrides set its defaults; what the user passes with --config still wins.
update_config(config, dict(workflow.config_settings.config))

validate(config, schema="config.schema.yaml", set_default=True)

try:
    cxr_config.check(config, set(DEFAULT_ARCHITECTURES))
except CxrError as error:
    raise WorkflowError(str(error))

DATASET = cxr_config.dataset(config)
SOURCES = DATASET["sources"]
ARCHITECTURES = config["training"]["architectures"]
SEEDS = config["training"]["seeds"]
USE_IMAGENET = config["training"]["weights"] == "imagenet"
AUDIT_ARCHITECTURE = config["audit"]["architecture"] or ARCHITECTURES[0]


localrules:
    generate_synthetic_data,
    fetch_source,
    fetch_weights,


wildcard_constraints:
    arch="[A-Za-z0-9_]+",
    seed=r"\d+",
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


# Settings that shape one training job. The lists of architectures and seeds (and the job's
# resources) are left out: adding an architecture must not change, hence rerun, the others.
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
    )
}


def job_training(arch):
    """The training settings of one architecture's jobs, its own extra_architectures entry only."""
    extra = config["training"]["extra_architectures"]
    return {
        **PER_JOB_TRAINING,
        "extra_architectures": {arch: extra[arch]} if arch in extra else {},
    }


def model_dir(arch, seed):
    return f"results/models/{arch}/seed{seed}"


def weights_input(wildcards):
    if not USE_IMAGENET:
        return []
    return [f"resources/weights/{wildcards.arch}.h5"]


def evaluation_jsons():
    return expand("results/eval/{arch}/seed{seed}.json", arch=ARCHITECTURES, seed=SEEDS)


def final_outputs():
    return [
        "results/curated/images.csv",
        "results/splits/splits.csv",
        "results/shards/manifest.json",
        *evaluation_jsons(),
        "results/eval/summary.json",
        "results/audit/leakage.json",
        "results/report.html",
    ]


def report_templates():
    """Templates and styles: editing one reruns only the report."""
    root = Path(workflow.basedir) / "report"
    return sorted(
        str(p) for p in root.glob("*") if p.suffix in {".j2", ".css", ".html"}
    )
