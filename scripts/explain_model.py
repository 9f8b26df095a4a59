"""Entry point of rule explain_model."""

from cxr.logs import run_tensorflow_job

run_tensorflow_job(snakemake, "explain_job")  # noqa: F821
