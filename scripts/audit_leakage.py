"""Entry point of rule audit_leakage."""

import pandas as pd

from cxr.audit import audit_leakage
from cxr.io import read_json, write_csv, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    audit, features = audit_leakage(
        pd.read_csv(inputs["images"], keep_default_na=False),
        pd.read_csv(inputs["exclusions"], keep_default_na=False),
        pd.read_csv(inputs["splits"], keep_default_na=False),
        read_json(inputs["split_summary"]),
        read_json(inputs["border_probe"]),
        settings=dict(params["audit"]),
        seed=params["seed"],
        n_boot=params["n_boot"],
        max_pixels=params["max_pixels"],
    )
    write_json(outputs["audit"], audit)
    write_csv(outputs["features"], features)


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input), outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
