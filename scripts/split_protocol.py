"""Entry point of rule split_protocol."""

from cxr.io import read_table, write_csv, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.split import split_protocol


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    images = read_table(inputs["images"])
    splits, removed, summary = split_protocol(images, params["split"], params["marks"])
    write_csv(outputs["splits"], splits)
    write_csv(outputs["removed"], removed)
    write_json(outputs["summary"], summary)


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input), outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
