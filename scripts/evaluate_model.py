"""Entry point of rule evaluate_model."""

import os

sm = snakemake  # noqa: F821
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if sm.params.training["onednn"] else "0"

from cxr.jobs import evaluate_job  # noqa: E402
from cxr.logs import run_logged  # noqa: E402

run_logged(
    sm.log[0], evaluate_job, sm.input.model, sm.input.manifest, sm.input.history,
    sm.input.summary, sm.wildcards.arch, int(sm.wildcards.seed), dict(sm.params.training),
    dict(sm.params.evaluation), sm.threads, dict(sm.output.items()), dict(sm.params.labels),
)  # fmt: skip
