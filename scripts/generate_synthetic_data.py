"""Entry point of rule generate_synthetic_data."""

import shutil
from pathlib import Path

from cxr.logs import run_logged
from cxr.synthetic import DISEASE_DIR, EXTERNAL_DIR, HEALTHY_DIR, generate_synthetic


def main(out_dir: str, seed: int, settings: dict) -> None:
    # The folders belong to this rule: a rerun (new seed or settings) replaces them.
    for folder in (DISEASE_DIR, HEALTHY_DIR, EXTERNAL_DIR):
        shutil.rmtree(Path(out_dir) / folder, ignore_errors=True)
    generate_synthetic(Path(out_dir), seed=seed, **settings)


run_logged(
    snakemake.log[0],  # noqa: F821
    main,
    snakemake.params.out_dir,  # noqa: F821
    snakemake.params.seed,  # noqa: F821
    dict(snakemake.params.settings),  # noqa: F821
)
