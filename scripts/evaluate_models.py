"""Entry point of rule evaluate_models (no TensorFlow: it reads the runs' predictions)."""

from cxr.evaluate import evaluate_models_job
from cxr.logs import run_logged
from cxr.provenance import record_job

sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    evaluate_models_job,
    inputs=dict(sm.input.items()),
    outputs=dict(sm.output.items()),
    params=dict(sm.params.items()),
)
record_job(snakemake, __file__)  # noqa: F821
