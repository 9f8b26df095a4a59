"""Entry point of rule render_report."""

from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.report import write_report


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    write_report(
        inputs,
        outputs["html"],
        config=dict(params["config"]),
        sources={name: dict(spec) for name, spec in params["sources"].items()},
        labels=dict(params["labels"]),
        protocols=[dict(p) for p in params["protocols"]],
        primary=params["primary"],
        overlays=params["overlays"],
        template_dir=params["template_dir"],
    )


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    inputs={name: (list(v) if isinstance(v, list) else str(v)) for name, v in sm.input.items()},
    outputs=dict(sm.output),
    params=dict(sm.params),
)
record_job(snakemake, __file__)  # noqa: F821
