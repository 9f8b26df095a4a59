"""Entry point of rule assess_repeats."""

import pandas as pd

from cxr import plots
from cxr.io import read_json, read_table, write_csv, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.repeats import optimism_over_repeats, repeat_metrics


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    tables, rows = {}, []
    for entry, path in zip(params["predictions"], inputs["predictions"], strict=True):
        table = repeat_metrics(read_table(path), params["threshold"])
        tables.setdefault(entry["protocol"], {})[entry["architecture"]] = table
        rows.append(table.assign(**entry)[[*entry, *table.columns]])
    counts = {
        summary["protocol"]: summary["repeats"]
        for summary in (read_json(p) for p in inputs["summaries"])
    }
    result = optimism_over_repeats(
        tables, counts, article=params["article"], primary=params["primary"]
    )
    result["repeats"] = params["repeats"]
    write_json(outputs["summary"], result)
    write_csv(outputs["table"], pd.concat(rows, ignore_index=True))
    plots.repeated_optimism(result, outputs["plot"])


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={k: list(v) for k, v in sm.input.items()},
    outputs=dict(sm.output.items()),
    params=dict(sm.params.items()),
)
record_job(snakemake, __file__)  # noqa: F821
