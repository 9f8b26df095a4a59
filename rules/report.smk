rule render_report:
    input:
        flow="results/curated/flow.json",
        images="results/curated/images.csv",
        exclusions="results/curated/exclusions.csv",
        splits="results/splits/splits.csv",
        split_summary="results/splits/summary.json",
        manifest="results/shards/manifest.json",
        evaluations=evaluation_jsons(),
        predictions=expand(
            "results/eval/{arch}/seed{seed}.predictions.csv", arch=ARCHITECTURES, seed=SEEDS
        ),
        histories=expand(
            "results/models/{arch}/seed{seed}/history.csv", arch=ARCHITECTURES, seed=SEEDS
        ),
        train_summaries=expand(
            "results/models/{arch}/seed{seed}/summary.json", arch=ARCHITECTURES, seed=SEEDS
        ),
        eval_summary="results/eval/summary.json",
        audit="results/audit/leakage.json",
        border_examples="results/audit/border_examples.png",
        templates=report_templates(),
    output:
        report(
            "results/report.html",
            caption="../report/captions/report.rst",
            category="Report",
        ),
    params:
        config=config,
        report=config["report"],
        labels=config["labels"],
        sources=SOURCES,
        template_dir=str(Path(workflow.basedir) / "report"),
    log:
        "logs/render_report.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/render_report.py"
