"""Entry point of rule summarise_evaluations."""

from cxr.evaluate import summarise
from cxr.io import read_json, write_json
from cxr.logs import run_logged


def main(paths: list[str], out: str) -> None:
    write_json(out, summarise([read_json(p) for p in paths]))


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, list(sm.input), sm.output.summary)
