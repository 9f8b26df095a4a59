"""Entry point of rule tabulate_evaluations."""

from cxr.evaluate import summary_table
from cxr.io import read_json, write_csv
from cxr.logs import run_logged


def main(*, inputs: dict, outputs: dict) -> None:
    write_csv(outputs["table"], summary_table(read_json(inputs["summary"])))


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input.items()), outputs=dict(sm.output.items()))
