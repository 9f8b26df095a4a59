"""Entry point of rule explain_model."""

from cxr.logs import run_tensorflow_job
from cxr.provenance import record_job

run_tensorflow_job(snakemake, "explain_job")  # noqa: F821
record_job(snakemake, __file__)  # noqa: F821
