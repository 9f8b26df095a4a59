rule evaluate_model:
    input:
        model=lambda wildcards: (
            f"{model_dir(wildcards.arch, wildcards.seed)}/"
            + (
                "model.keras"
                if config["evaluation"]["checkpoint"] == "final"
                else "best.keras"
            )
        ),
        history="results/models/{arch}/seed{seed}/history.csv",
        summary="results/models/{arch}/seed{seed}/summary.json",
        manifest="results/shards/manifest.json",
    output:
        metrics="results/eval/{arch}/seed{seed}.json",
        predictions="results/eval/{arch}/seed{seed}.predictions.csv",
        roc=report(
            "results/eval/{arch}/seed{seed}.roc.png",
            caption="../report/captions/roc.rst",
            category="Results",
            subcategory="{arch}",
        ),
        confusion=report(
            "results/eval/{arch}/seed{seed}.confusion.png",
            caption="../report/captions/confusion.rst",
            category="Results",
            subcategory="{arch}",
        ),
        curves=report(
            "results/eval/{arch}/seed{seed}.curves.png",
            caption="../report/captions/curves.rst",
            category="Training",
            subcategory="{arch}",
        ),
    log:
        "logs/evaluate_model/{arch}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_model/{arch}/seed{seed}.tsv"
    conda:
        "../envs/tf.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=config["training"]["mem_mb"],
    params:
        evaluation=config["evaluation"],
        training=lambda wildcards: job_training(wildcards.arch),
        labels=config["labels"],
    script:
        "../scripts/evaluate_model.py"


rule summarise_evaluations:
    input:
        evaluation_jsons(),
    output:
        summary="results/eval/summary.json",
    log:
        "logs/summarise_evaluations.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/summarise_evaluations.py"
