"""Entry point of rule render_report."""

from cxr.logs import run_logged
from cxr.report import write_report

sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    write_report,
    {name: (list(v) if isinstance(v, list) else str(v)) for name, v in sm.input.items()},
    sm.output[0],
    config=dict(sm.params.config),
    sources={name: dict(spec) for name, spec in sm.params.sources.items()},
    labels=dict(sm.params.labels),
    protocols=[dict(p) for p in sm.params.protocols],
    primary=sm.params.primary,
    template_dir=sm.params.template_dir,
)
