"""Entry point of rule train_models."""

from cxr.logs import run_tensorflow_job
from cxr.provenance import record_job

sm = snakemake  # noqa: F821
# Read from the config, not a rule param: flipping it must not retrain finished models.
run_tensorflow_job(
    sm, "train_models_job", module="heads", require_gpu=sm.config["training"]["require_gpu"]
)
record_job(snakemake, __file__)  # noqa: F821
