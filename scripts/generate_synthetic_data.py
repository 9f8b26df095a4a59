"""Entry point of rule generate_synthetic_data."""

from pathlib import Path

from cxr.logs import run_logged
from cxr.synthetic import generate_synthetic


def main(out_dir: str, seed: int, settings: dict) -> None:
    generate_synthetic(Path(out_dir), seed=seed, **settings)


run_logged(
    snakemake.log[0],  # noqa: F821
    main,
    snakemake.params.out_dir,  # noqa: F821
    snakemake.params.seed,  # noqa: F821
    dict(snakemake.params.settings),  # noqa: F821
)
