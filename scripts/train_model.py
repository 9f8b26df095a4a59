"""Entry point of rule train_model."""

from cxr.logs import run_tensorflow_job

sm = snakemake  # noqa: F821
# Read from the config, not a rule param: flipping it must not retrain finished models.
run_tensorflow_job(sm, "train_job", require_gpu=sm.config["training"]["require_gpu"])
