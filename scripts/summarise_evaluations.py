"""Entry point of rule summarise_evaluations."""

from cxr.evaluate import summarise
from cxr.io import read_json, write_json
from cxr.logs import run_logged


def main(*, inputs: dict, outputs: dict) -> None:
    write_json(outputs["summary"], summarise([read_json(p) for p in inputs["evaluations"]]))


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={name: list(files) for name, files in sm.input.items()},
    outputs=dict(sm.output),
)
