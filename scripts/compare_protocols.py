"""Entry point of rule compare_protocols."""

from cxr.compare import compare_protocols
from cxr.io import read_json, read_table, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    runs = [
        {
            "evaluation": read_json(ev),
            "predictions": read_table(pred),
        }
        for ev, pred in zip(inputs["evaluations"], inputs["predictions"], strict=True)
    ]
    comparison = compare_protocols(
        runs,
        [read_json(p) for p in inputs["splits"]],
        article="article",
        primary=params["primary"],
        threshold=params["threshold"],
        n_boot=params["n_boot"],
        seed=params["seed"],
    )
    write_json(outputs["comparison"], comparison)


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={k: list(v) for k, v in sm.input.items()},
    outputs=dict(sm.output.items()),
    params=dict(sm.params.items()),
)
record_job(snakemake, __file__)  # noqa: F821
