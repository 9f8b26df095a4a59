"""Entry point of rule fetch_source."""

from cxr.fetch import fetch_source
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, params: dict, wildcards: dict) -> None:
    fetch_source(wildcards["source"], dict(params["spec"]))


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, params=dict(sm.params), wildcards=dict(sm.wildcards))
record_job(snakemake, __file__)  # noqa: F821
