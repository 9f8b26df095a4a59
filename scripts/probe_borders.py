"""Entry point of rule probe_borders."""

import os

sm = snakemake  # noqa: F821
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if sm.params.training["onednn"] else "0"

from cxr.jobs import border_probe_job  # noqa: E402
from cxr.logs import run_logged  # noqa: E402

run_logged(
    sm.log[0], border_probe_job, sm.input.manifest, sm.params.architecture,
    dict(sm.params.training), dict(sm.params.audit), list(sm.input.weights), sm.params.seed,
    sm.params.n_boot, sm.threads, sm.output.probe, sm.output.examples,
)  # fmt: skip
