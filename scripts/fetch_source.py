"""Entry point of rule fetch_source."""

from cxr.fetch import fetch_source
from cxr.logs import run_logged

sm = snakemake  # noqa: F821
run_logged(sm.log[0], fetch_source, sm.wildcards.source, dict(sm.params.spec))
