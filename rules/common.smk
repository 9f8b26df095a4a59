import dataclasses
import os
import sys
from pathlib import Path

# This file's own folder, not workflow.basedir: when another workflow imports this one as a
# module (`module cxr: snakefile: ...`), workflow.basedir is the importing workflow's folder.
WORKFLOW_DIR = Path(str(workflow.current_basedir)).parent
sys.path.insert(0, str(WORKFLOW_DIR / "scripts"))

from cxr import config as cxr_config  # noqa: E402
from cxr.devices import visible_gpus  # noqa: E402
from snakemake import __version__ as SNAKEMAKE_VERSION  # noqa: E402
from snakemake.io import report as report_flag  # noqa: E402
from cxr.errors import CxrError  # noqa: E402
from cxr.protocols import RUN_NAME  # noqa: E402
from cxr.shard_names import shard_names  # noqa: E402
from cxr.synthetic import GROUND_TRUTH_FILE  # noqa: E402

# The dataset's overrides, then what the user wrote over them (--configfile files, then
# --config; the workflow's own config.yaml holds defaults, wherever it is given from), the
# schema (defaults filled in), the cross-field checks: a bad setting stops here, before any
# job, naming its key.
cli_files = list(workflow.config_settings.configfiles)
user_settings = cxr_config.user_settings(
    cli_files,
    workflow.config_settings.config,
    defaults=[
        WORKFLOW_DIR / "config.yaml",
        *(path for path in workflow.configfiles if path not in cli_files),
    ],
)
try:
    resolved, PROTOCOLS = cxr_config.load(
        config,
        user_settings,
        schema=WORKFLOW_DIR / "rules" / "config.schema.yaml",
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
# The `gpu` resource of each TensorFlow job: training.gpus where this machine has a GPU, so
# that profiles/default runs one at a time per GPU; none where it has no GPU, so that the jobs
# run side by side up to --cores. Found without TensorFlow (cxr.devices). A cluster profile
# sets the resource of the jobs it sends to GPU nodes itself (profiles/slurm).
TENSORFLOW_GPUS = config["training"]["gpus"] if visible_gpus() else 0
SALIENCY = config["saliency"]

# The results layout, written once: rules name these patterns, scripts get the paths as named
# inputs and outputs, and nothing rebuilds a path from a pattern elsewhere.
SYNTHETIC = "resources/synthetic"
# Where the generator planted what (outside the source roots); never an input of training.
GROUND_TRUTH = f"{SYNTHETIC}/{GROUND_TRUTH_FILE}"
CURATED = "results/curated"
# The COVID-19 collection's expert annotations matched to the curated images (lung regions in
# the shards' square, severity scores), and what of them was not used, with why.
ANNOTATIONS = f"{CURATED}/annotations"
SHARDS = "results/shards"
# write_shards' TFRecord files (declared so that --delete-all-output, --list-untracked and
# remote storage know them).
SHARD_FILES = [f"{SHARDS}/{name}" for name in shard_names(config["shards"]["count"])]
FEATURES = "results/features/{arch}"
SPLITS = "results/{protocol}/splits"
# Repeated splits of a protocol (protocols.<name>.repeats): their splits, and per architecture
# the test predictions of each repeat's head.
REPEATS = "results/{protocol}/repeats"
REPEATS_SUMMARY = "results/protocols/repeats"
MODEL = "results/{protocol}/models/{arch}/{run}"
EVAL = "results/{protocol}/eval/{arch}/{run}"
EVAL_SUMMARY = "results/{protocol}/eval/summary.json"
EVAL_SUMMARY_TABLE = "results/{protocol}/eval/summary.csv"
AUDIT = "results/audit"
COMPARISON = "results/protocols/comparison.json"
GENERALISATION = "results/protocols/generalisation"
LEARNING_CURVE = "results/{protocol}/eval/learning_curve"
REPORT = "results/report.html"
# Do the scores follow the disease: the primary protocol's first run of each architecture
# against the annotations' severity scores.
SEVERITY = f"results/{PRIMARY}/eval/severity"
# The quantities a rerun is verified on (scripts/verify.py against expected/<dataset>.json).
MEASURED = "results/measured.json"
# Which job made each file the report shows and every job upstream of it (cxr.provenance).
PROVENANCE = "results/provenance.json"
# The run as a Workflow Run RO-Crate, zipped (cxr.crates; make crate).
RUN_CRATE = "results/ro-crate.zip"


wildcard_constraints:
    arch="[A-Za-z0-9_]+",
    run=RUN_NAME,
    protocol="|".join(PROTOCOLS),
    source="[A-Za-z0-9_-]+",


def source_inputs(wildcards=None):
    """What curation reads: generated or downloaded roots, or the user's local copies."""
    if "synthetic" in DATASET:
        return [SYNTHETIC]
    inputs = []
    for name, spec in SOURCES.items():
        if "download" in spec:
            inputs.append(f"resources/sources/{name}.complete")
        else:
            inputs.append(spec["root"])
    return inputs


# What describes a source without changing its images: the report shows it; curation and
# fetching do not get it, so editing a licence or version text reruns only the report.
SOURCE_DESCRIPTION = ("version", "license")


def curation_sources():
    """The sources as curation reads them (where and how, not their description)."""
    return {
        name: {
            k: v for k, v in spec.items() if k not in (*SOURCE_DESCRIPTION, "download")
        }
        for name, spec in SOURCES.items()
    }


def external_sets():
    """Each external source alone, then the dataset's named groups of them (external_sets):
    name -> its sources, in that order."""
    alone = {n: [n] for n, s in SOURCES.items() if s["role"] == "external"}
    return alone | {n: list(m) for n, m in DATASET["external_sets"].items()}


def fetch_spec(wildcards):
    """What fetching one source needs: where to put it and where it comes from."""
    spec = SOURCES[wildcards.source]
    return {"root": spec["root"], "download": spec["download"]}


# How and where jobs run, not what they compute: no rule gets these as params, so changing
# them (threads, memory, a GPU, a download mirror) reruns nothing.
EXECUTION_SETTINGS = (
    "threads",
    "mem_mb",
    "runtime",
    "gpus",
    "require_gpu",
    "weights_mirror",
)

# Settings that shape one architecture's base and its runs. The lists of architectures and
# seeds (and the jobs' resources) are left out: adding an architecture must not change, hence
# rerun, the others.
PER_JOB_TRAINING = {
    k: v
    for k, v in config["training"].items()
    if k
    not in (
        *EXECUTION_SETTINGS,
        "architectures",
        "seeds",
        "extra_architectures",
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
    return dataclasses.asdict(PROTOCOLS[wildcards.protocol].run(wildcards.run))


# train_models and evaluate_models handle every run of one architecture, across protocols, in
# one process (a run's head fits in under a second; a TensorFlow process takes seconds to start).
# Their per-run outputs are lists in this order: protocols as run, then each protocol's runs.
def architecture_runs(pattern):
    """`pattern` for every protocol and run, {arch} left as the rule's wildcard."""
    return [
        pattern.format(protocol=name, arch="{arch}", run=run.name)
        for name, protocol in PROTOCOLS.items()
        for run in protocol.runs()
    ]


def split_marks(wildcards):
    """What a protocol that drops marked images removes; None when it keeps them."""
    if not PROTOCOLS[wildcards.protocol].exclude_marks:
        return None
    return {k: config["marks"][k] for k in ("min_area", "ids")}


# The protocols with repeated splits, in PROTOCOLS order.
REPEATED = [name for name, protocol in PROTOCOLS.items() if protocol.repeats]


def planned_run(arch, protocol, run):
    """A run as train_models fits it: its protocol, name, seed, share of training patients and
    training settings (a protocol may set its own head settings)."""
    return {
        "protocol": protocol,
        "run": dataclasses.asdict(run),
        "training": job_training(arch, protocol),
    }


def repeat_plan(wildcards):
    """What train_models fits for each repeated protocol (REPEATED order): the run whose seed
    and settings every repeat's head uses."""
    return [
        planned_run(wildcards.arch, name, PROTOCOLS[name].repeat_run)
        for name in REPEATED
    ]


def run_plan(wildcards):
    """Each run of architecture_runs' order, as planned_run describes it."""
    return [
        planned_run(wildcards.arch, name, run)
        for name, protocol in PROTOCOLS.items()
        for run in protocol.runs()
    ]


def run_reports(pattern, figure, category):
    """One run figure per run of the primary protocol (the runs whose figures the report
    shows: REPORT_ARTIFACTS), labelled for Snakemake's report. The other protocols' runs are
    shown as numbers, so their figures are not drawn (a third of evaluate_models' time).
    """
    figures = []
    for name, protocol in {PRIMARY: PROTOCOLS[PRIMARY]}.items():
        for run in protocol.runs():

            def labels(wildcards, run=run):
                share = run.train_fraction
                return {
                    "architecture": wildcards.arch,
                    "seed": run.seed,
                    "training patients": "all" if share is None else f"{share:.0%}",
                    "figure": figure,
                }

            path = pattern.format(protocol=name, arch="{arch}", run=run.name)
            # snakemake.io's report() flag: `report` at the start of a line is a Snakefile
            # keyword, so it is called by another name here.
            figures.append(
                report_flag(
                    path,
                    caption=f"../report/captions/{figure.lower()}.rst",
                    category=category,
                    subcategory=name,
                    labels=labels,
                )
            )
    return figures


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
        "repeats": protocol.repeats,
        "training": protocol.training,
        "runs": len(protocol.runs()),
    }


def explained_run_names():
    """The primary protocol's runs that explain_model maps, per architecture: the first, or all
    of them (saliency.runs); none when saliency is off."""
    if not SALIENCY["enabled"]:
        return []
    runs = PROTOCOLS[PRIMARY].runs()
    return [run.name for run in (runs[:1] if SALIENCY["runs"] == "first" else runs)]


def explained_runs(pattern):
    """`pattern` for each architecture's explained runs (explained_run_names)."""
    return [
        pattern.format(protocol=PRIMARY, arch=arch, run=run)
        for arch in ARCHITECTURES
        for run in explained_run_names()
    ]


def severity_runs():
    """The runs whose scores assess_severity compares with the severity scores: the primary
    protocol's first run of each architecture (the run whose maps are shown)."""
    run = PROTOCOLS[PRIMARY].runs()[0].name
    return [{"architecture": arch, "run": run} for arch in ARCHITECTURES]


def ground_truth_input(wildcards):
    """The generator's folder, whose table of planted findings the pointing game reads: only
    synthetic data have one."""
    return [SYNTHETIC] if "synthetic" in DATASET else []


def learning_curve_protocols():
    return [name for name, p in PROTOCOLS.items() if p.train_fractions is not None]


def final_outputs():
    return [
        f"{CURATED}/images.csv",
        *(EVAL_SUMMARY_TABLE.format(protocol=p) for p in PROTOCOLS),
        *(
            f"{LEARNING_CURVE.format(protocol=p)}.png"
            for p in learning_curve_protocols()
        ),
        COMPARISON,
        *([f"{REPEATS_SUMMARY}.json"] if REPEATED else []),
        f"{GENERALISATION}.json",
        f"{AUDIT}/leakage.json",
        MEASURED,
        REPORT,
    ]


def report_templates():
    """Templates and styles: editing one reruns only the report. Relative to the working
    directory, so that moving or re-cloning the checkout does not change the inputs."""
    root = WORKFLOW_DIR / "report"
    return sorted(
        os.path.relpath(p)
        for p in root.glob("*")
        if p.suffix in {".j2", ".css", ".html"}
    )


def report_config():
    """The config as the report records it: the dataset that ran, without the settings of how
    jobs run (EXECUTION_SETTINGS), which change no result."""
    recorded = {k: v for k, v in config.items() if k != "datasets"}
    recorded["datasets"] = {config["dataset"]: DATASET}
    recorded["training"] = {
        k: v for k, v in config["training"].items() if k not in EXECUTION_SETTINGS
    }
    return recorded


def tensorflow_env(name):
    """The conda env of the TensorFlow jobs of `name`: the CUDA build where they must run
    on a GPU (training.require_gpu, or a profile's `require_gpu` resource, as in
    profiles/slurm), else the plain build, which installs anywhere."""

    def env(wildcards):
        # The rule's resources include the profile's set-resources, under the rule's final
        # name (`cxr_train_model` where another workflow imports this one as a module).
        resource = getattr(rules, name).rule.resources.get("require_gpu")
        required = getattr(resource, "value", resource)
        if config["training"]["require_gpu"] or required:
            return "../envs/tf-gpu.yaml"
        return "../envs/tf.yaml"

    return env
