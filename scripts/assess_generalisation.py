"""Entry point of rule assess_generalisation."""

from cxr import plots
from cxr.generalisation import generalisation
from cxr.io import read_json, read_table, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    runs = [
        {"evaluation": read_json(ev), "predictions": read_table(pred)}
        for ev, pred in zip(inputs["evaluations"], inputs["predictions"], strict=True)
    ]
    result = generalisation(
        runs,
        protocol=params["protocol"],
        threshold=params["threshold"],
        n_boot=params["n_boot"],
        seed=params["seed"],
    )
    write_json(outputs["generalisation"], result)
    plots.generalisation(result, outputs["plot"])


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={k: list(v) for k, v in sm.input.items()},
    outputs=dict(sm.output.items()),
    params=dict(sm.params.items()),
)
record_job(snakemake, __file__)  # noqa: F821
