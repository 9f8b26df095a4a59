"""Entry point of rule evaluate_model."""

from cxr.logs import run_tensorflow_job

run_tensorflow_job(snakemake, "evaluate_job")  # noqa: F821
