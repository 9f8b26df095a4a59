"""Entry point of rule list_sources."""

from cxr.listing import write_listing
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, outputs: dict, params: dict) -> None:
    write_listing(params["root"], outputs["listing"])


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
