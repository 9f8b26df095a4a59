"""Entry point of rule summarise_evaluations."""

from cxr.evaluate import summarise, summary_table
from cxr.io import read_json, write_csv, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, inputs: dict, outputs: dict) -> None:
    summary = summarise([read_json(p) for p in inputs["evaluations"]])
    write_json(outputs["summary"], summary)
    # The table is written from the summary as read back, as when it was a job of its own.
    write_csv(outputs["table"], summary_table(read_json(outputs["summary"])))


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={name: list(files) for name, files in sm.input.items()},
    outputs=dict(sm.output),
)
record_job(snakemake, __file__)  # noqa: F821
