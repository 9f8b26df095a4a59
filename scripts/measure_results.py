"""Entry point of rule measure_results."""

from cxr.io import read_json, write_json
from cxr.logs import run_script
from cxr.provenance import record_job
from cxr.verify import measure


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    quantities = measure(
        flow=read_json(inputs["flow"]),
        split_summaries={
            protocol: read_json(path)
            for protocol, path in zip(params["protocols"], inputs["split_summaries"], strict=True)
        },
        evaluations=[
            (entry, read_json(path))
            for entry, path in zip(params["evaluations"], inputs["evaluations"], strict=True)
        ],
        audit=read_json(inputs["audit"]),
        saliency=[
            (entry, read_json(path))
            for entry, path in zip(params["saliency"], inputs["saliency"], strict=True)
        ],
    )
    write_json(outputs["measured"], {"dataset": params["dataset"], "quantities": quantities})


run_script(snakemake, main)  # noqa: F821
record_job(snakemake, __file__)  # noqa: F821
