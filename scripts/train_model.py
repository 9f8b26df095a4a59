"""Entry point of rule train_model."""

import os

sm = snakemake  # noqa: F821
# Read by TensorFlow once, at import: must be set before anything imports it.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if sm.params.training["onednn"] else "0"

from cxr.jobs import train_job  # noqa: E402
from cxr.logs import run_logged  # noqa: E402

run_logged(
    sm.log[0], train_job, sm.input.manifest, sm.wildcards.arch, int(sm.wildcards.seed),
    dict(sm.params.training), list(sm.input.weights), sm.params.out_dir, sm.threads,
    sm.output.summary,
    # Read from the config, not params: flipping it must not retrain finished models.
    sm.config["training"]["require_gpu"],
)  # fmt: skip
