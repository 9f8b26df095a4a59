"""Entry point of rule extract_features."""

from cxr.logs import run_tensorflow_job
from cxr.provenance import record_job

sm = snakemake  # noqa: F821
# Read from the config, not a rule param: flipping it must not rerun finished jobs.
run_tensorflow_job(sm, "extract_features_job", require_gpu=sm.config["training"]["require_gpu"])
record_job(snakemake, __file__)  # noqa: F821
