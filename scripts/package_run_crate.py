"""Entry point of rule package_run_crate."""

import tempfile
from pathlib import Path

import yaml

from cxr.crates import job_records, run_crate, run_files, write_zip
from cxr.io import read_json
from cxr.logs import run_script
from cxr.provenance import JOBS, record_job

REPO = Path(__file__).resolve().parents[1]


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    provenance = read_json(inputs["provenance"])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(params["config"], sort_keys=False, allow_unicode=True))
        crate = run_crate(
            REPO,
            provenance=provenance,
            jobs=job_records(provenance, JOBS),
            files=run_files(),
            config_path=config,
            snakemake_version=params["snakemake_version"],
        )
        write_zip(crate, Path(outputs["crate"]))


run_script(snakemake, main)  # noqa: F821
record_job(snakemake, __file__)  # noqa: F821
