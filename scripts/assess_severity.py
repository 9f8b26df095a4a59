"""Entry point of rule assess_severity."""

from cxr import plots
from cxr.io import read_table, write_json
from cxr.logs import run_script
from cxr.provenance import record_job
from cxr.severity import severity_correlations


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    predictions = {
        entry["architecture"]: read_table(path)
        for entry, path in zip(params["runs"], inputs["predictions"], strict=True)
    }
    result = severity_correlations(
        predictions,
        read_table(inputs["annotated"]),
        runs={entry["architecture"]: entry["run"] for entry in params["runs"]},
        n_boot=params["n_boot"],
        seed=params["seed"],
    )
    write_json(outputs["summary"], result)
    plots.severity_scores(result, outputs["plot"])


run_script(snakemake, main)  # noqa: F821
record_job(snakemake, __file__)  # noqa: F821
