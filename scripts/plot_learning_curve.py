"""Entry point of rule plot_learning_curve."""

import pandas as pd

from cxr import plots
from cxr.io import read_json, write_csv
from cxr.logs import run_logged
from cxr.provenance import record_job


def learning_curve_table(summary: dict) -> pd.DataFrame:
    """summary.json's learning_curve rows, flattened to one column per number."""
    rows = []
    for row in summary.get("learning_curve", []):
        flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
        for key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
            flat[f"{key}_mean"] = row[key]["mean"]
            flat[f"{key}_sd"] = row[key]["sd"]
        rows.append(flat)
    return pd.DataFrame(rows)


def main(*, inputs: dict, outputs: dict) -> None:
    table = learning_curve_table(read_json(inputs["summary"]))
    write_csv(outputs["table"], table)
    plots.learning_curve(table, outputs["plot"])


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input), outputs=dict(sm.output))
record_job(snakemake, __file__)  # noqa: F821
