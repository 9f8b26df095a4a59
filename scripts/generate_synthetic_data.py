"""Entry point of rule generate_synthetic_data."""

import shutil
from pathlib import Path

from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.synthetic import DISEASE_DIR, EXTERNAL_DIR, HEALTHY_DIR, LATER_DIR, generate_synthetic


def main(*, params: dict) -> None:
    out_dir = Path(params["out_dir"])
    # The folders belong to this rule: a rerun (new seed or settings) replaces them.
    for folder in (DISEASE_DIR, HEALTHY_DIR, EXTERNAL_DIR, LATER_DIR):
        shutil.rmtree(out_dir / folder, ignore_errors=True)
    generate_synthetic(out_dir, seed=params["seed"], **dict(params["settings"]))


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
