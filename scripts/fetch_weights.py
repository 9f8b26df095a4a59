"""Entry point of rule fetch_weights (a local rule: run it where there is internet)."""

from pathlib import Path

from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.weights import install_weights


def main(*, outputs: dict, params: dict, wildcards: dict) -> None:
    install_weights(wildcards["arch"], Path(outputs["weights"]), base_url=params["mirror"])


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    outputs=dict(sm.output),
    params=dict(sm.params),
    wildcards=dict(sm.wildcards),
)
record_job(snakemake, __file__)  # noqa: F821
