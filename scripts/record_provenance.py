"""Entry point of rule record_provenance."""

from pathlib import Path

from cxr.io import write_json
from cxr.logs import run_script
from cxr.provenance import collect, git_commit, record_job

REPO = Path(__file__).resolve().parents[1]


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    shown = {name: [paths] if isinstance(paths, str) else paths for name, paths in inputs.items()}
    found = collect([path for paths in shown.values() for path in paths])
    write_json(
        outputs["provenance"],
        {"workflow": git_commit(REPO), "inputs": shown, **found},
    )


run_script(snakemake, main)  # noqa: F821
record_job(snakemake, __file__)  # noqa: F821
