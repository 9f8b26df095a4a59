"""Entry point of rule fetch_weights (a local rule: run it where there is internet)."""

from pathlib import Path

from cxr.logs import run_logged
from cxr.weights import install_weights

sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    install_weights,
    sm.wildcards.arch,
    Path(sm.output.weights),
    base_url=sm.params.mirror,
)
