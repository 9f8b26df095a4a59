# What the report shows, by name: render_report reads them, and record_provenance says which
# job made each (results/provenance.json, shown under every figure and table).
REPORT_ARTIFACTS = dict(
    flow=f"{CURATED}/flow.json",
    images=f"{CURATED}/images.csv",
    exclusions=f"{CURATED}/exclusions.csv",
    manifest=f"{SHARDS}/manifest.json",
    # The primary protocol fills the main sections.
    splits=f"{SPLITS.format(protocol=PRIMARY)}/splits.csv",
    split_summary=f"{SPLITS.format(protocol=PRIMARY)}/summary.json",
    evaluations=protocol_runs(PRIMARY, f"{EVAL}.json"),
    predictions=protocol_runs(PRIMARY, f"{EVAL}.predictions.csv"),
    figures=[
        path
        for kind in ("curves", "roc", "confusion")
        for path in protocol_runs(PRIMARY, f"{EVAL}.{kind}.png")
    ],
    histories=protocol_runs(PRIMARY, f"{MODEL}/history.csv"),
    train_summaries=protocol_runs(PRIMARY, f"{MODEL}/summary.json"),
    eval_summary=EVAL_SUMMARY.format(protocol=PRIMARY),
    # Every protocol, in protocols.run order.
    protocol_splits=[f"{SPLITS.format(protocol=p)}/summary.json" for p in PROTOCOLS],
    protocol_removed=[f"{SPLITS.format(protocol=p)}/removed.csv" for p in PROTOCOLS],
    protocol_summaries=[EVAL_SUMMARY.format(protocol=p) for p in PROTOCOLS],
    learning_curves=[
        f"{LEARNING_CURVE.format(protocol=p)}.csv" for p in learning_curve_protocols()
    ],
    learning_curve_plots=[
        f"{LEARNING_CURVE.format(protocol=p)}.png" for p in learning_curve_protocols()
    ],
    comparison=COMPARISON,
    repeats=[f"{REPEATS_SUMMARY}.{kind}" for kind in ("json", "png") if REPEATED],
    generalisation=f"{GENERALISATION}.json",
    generalisation_plot=f"{GENERALISATION}.png",
    audit=f"{AUDIT}/leakage.json",
    border_examples=f"{AUDIT}/border_examples.png",
    saliency=explained_runs(f"{EVAL}.saliency.json"),
    saliency_maps=explained_runs(f"{EVAL}.saliency.npz"),
    saliency_costs=explained_runs(f"{EVAL}.saliency.cost.json"),
    lung_attention=explained_runs(f"{EVAL}.lungs.json"),
    randomisation=explained_runs(f"{EVAL}.randomisation.json"),
    lung_masks=f"{ANNOTATIONS}/lungs.npz",
    annotation_summary=f"{ANNOTATIONS}/summary.json",
    annotation_exclusions=f"{ANNOTATIONS}/exclusions.csv",
    severity=f"{SEVERITY}.json",
    severity_plot=f"{SEVERITY}.png",
)


rule record_provenance:
    input:
        **REPORT_ARTIFACTS,
        measured=MEASURED,
    output:
        provenance=PROVENANCE,
    log:
        "logs/record_provenance.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/record_provenance.py"


rule render_report:
    input:
        **REPORT_ARTIFACTS,
        provenance=PROVENANCE,
        templates=report_templates(),
    output:
        html=report(
            REPORT,
            caption="../report/captions/report.rst",
            category="Report",
        ),
    log:
        "logs/render_report.log",
    conda:
        "../envs/report.yaml"
    params:
        config=report_config(),
        labels=config["labels"],
        sources=SOURCES,
        protocols=[
            {"name": name, **protocol.split_settings(), **protocol_facts(protocol)}
            for name, protocol in PROTOCOLS.items()
        ],
        primary=PRIMARY,
        overlays=SALIENCY["overlays"],
        template_dir=lambda wildcards, input: os.path.dirname(input.templates[0]),
    script:
        "../scripts/render_report.py"


# A Workflow Run RO-Crate of the finished run (cxr.crates): not part of `all`; `make crate`.
rule package_run_crate:
    input:
        report=REPORT,
        provenance=PROVENANCE,
        measured=MEASURED,
    output:
        crate=RUN_CRATE,
    log:
        "logs/package_run_crate.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        config=report_config(),
        snakemake_version=SNAKEMAKE_VERSION,
    script:
        "../scripts/package_run_crate.py"
