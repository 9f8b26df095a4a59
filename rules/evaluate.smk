rule evaluate_models:
    input:
        # Each list in the order of params.runs (architecture_runs).
        predictions=architecture_runs(f"{EVAL}.predictions.csv"),
        history=architecture_runs(f"{MODEL}/history.csv"),
        summary=architecture_runs(f"{MODEL}/summary.json"),
    output:
        metrics=architecture_runs(f"{EVAL}.json"),
        roc=run_reports(f"{EVAL}.roc.png", "ROC", "Results"),
        confusion=run_reports(f"{EVAL}.confusion.png", "confusion", "Results"),
        curves=run_reports(f"{EVAL}.curves.png", "curves", "Training"),
    log:
        "logs/evaluate_models/{arch}.log",
    benchmark:
        "results/benchmarks/evaluate_models/{arch}.tsv"
    conda:
        "../envs/data.yaml"
    params:
        architecture="{arch}",
        runs=run_plan,
        evaluation=config["evaluation"],
        external=external_sets(),
        labels=config["labels"],
        # The protocol whose runs get figures (run_reports), in params.runs order.
        figures_of=PRIMARY,
    script:
        "../scripts/evaluate_models.py"


# A protocol's summary over its runs and the same as a table: one process for both files (a
# Python process costs more than the work).
rule summarise_evaluations:
    input:
        evaluations=lambda wildcards: protocol_runs(wildcards.protocol, f"{EVAL}.json"),
    output:
        summary=EVAL_SUMMARY,
        table=report(
            EVAL_SUMMARY_TABLE,
            caption="../report/captions/metrics.rst",
            category="Summaries",
            labels={"protocol": "{protocol}", "content": "test metrics over runs"},
        ),
    log:
        "logs/summarise_evaluations/{protocol}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/summarise_evaluations.py"


# Do the scores follow the disease? Spearman's rho of P(disease) against the experts' severity
# scores of the COVID-19 images that have them (cxr.severity).
rule assess_severity:
    input:
        predictions=[
            EVAL.format(protocol=PRIMARY, arch=e["architecture"], run=e["run"])
            + ".predictions.csv"
            for e in severity_runs()
        ],
        annotated=f"{ANNOTATIONS}/images.csv",
    output:
        summary=f"{SEVERITY}.json",
        plot=report(
            f"{SEVERITY}.png",
            caption="../report/captions/severity.rst",
            category="Summaries",
            labels={"protocol": PRIMARY, "content": "scores against severity"},
        ),
    log:
        "logs/assess_severity.log",
    conda:
        "../envs/data.yaml"
    params:
        runs=severity_runs(),
        n_boot=config["evaluation"]["bootstrap"],
        seed=config["seed"],
    script:
        "../scripts/assess_severity.py"


rule plot_learning_curve:
    input:
        summary=EVAL_SUMMARY,
    output:
        table=report(
            f"{LEARNING_CURVE}.csv",
            caption="../report/captions/learning_curve.rst",
            category="Summaries",
            labels={"protocol": "{protocol}", "content": "learning curve (table)"},
        ),
        plot=report(
            f"{LEARNING_CURVE}.png",
            caption="../report/captions/learning_curve.rst",
            category="Summaries",
            labels={"protocol": "{protocol}", "content": "learning curve (plot)"},
        ),
    log:
        "logs/plot_learning_curve/{protocol}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/plot_learning_curve.py"


rule compare_protocols:
    input:
        # In the same order: evaluations[i] describes predictions[i].
        evaluations=compared_runs(f"{EVAL}.json"),
        predictions=compared_runs(f"{EVAL}.predictions.csv"),
        splits=[f"{SPLITS.format(protocol=p)}/summary.json" for p in PROTOCOLS],
    output:
        comparison=COMPARISON,
    log:
        "logs/compare_protocols.log",
    conda:
        "../envs/data.yaml"
    params:
        protocols=list(PROTOCOLS),
        primary=PRIMARY,
        threshold=config["evaluation"]["threshold"],
        n_boot=config["evaluation"]["bootstrap"],
        seed=config["seed"],
    script:
        "../scripts/compare_protocols.py"


rule assess_generalisation:
    input:
        evaluations=protocol_runs(PRIMARY, f"{EVAL}.json"),
        predictions=protocol_runs(PRIMARY, f"{EVAL}.predictions.csv"),
    output:
        generalisation=f"{GENERALISATION}.json",
        plot=report(
            f"{GENERALISATION}.png",
            caption="../report/captions/generalisation.rst",
            category="Summaries",
            labels={"protocol": PRIMARY, "content": "internal test vs external sets"},
        ),
    log:
        "logs/assess_generalisation.log",
    conda:
        "../envs/report.yaml"
    params:
        protocol=PRIMARY,
        threshold=config["evaluation"]["threshold"],
        n_boot=config["evaluation"]["bootstrap"],
        seed=config["seed"],
    script:
        "../scripts/assess_generalisation.py"


# The article's optimism over the repeated splits (protocols.<name>.repeats): per repeat the
# test metrics, and the paired differences article - primary with their corrected interval.
rule assess_repeats:
    input:
        # In the order of params.predictions.
        predictions=[
            f"{REPEATS.format(protocol=p)}/{arch}.predictions.csv"
            for p in REPEATED
            for arch in ARCHITECTURES
        ],
        summaries=[f"{REPEATS.format(protocol=p)}/summary.json" for p in REPEATED],
    output:
        summary=f"{REPEATS_SUMMARY}.json",
        table=f"{REPEATS_SUMMARY}.csv",
        plot=report(
            f"{REPEATS_SUMMARY}.png",
            caption="../report/captions/repeats.rst",
            category="Summaries",
            labels={"content": "optimism over repeated splits"},
        ),
    log:
        "logs/assess_repeats.log",
    conda:
        "../envs/data.yaml"
    params:
        predictions=[
            {"protocol": p, "architecture": arch}
            for p in REPEATED
            for arch in ARCHITECTURES
        ],
        repeats={p: PROTOCOLS[p].repeats for p in REPEATED},
        article="article",
        primary=PRIMARY,
        threshold=config["evaluation"]["threshold"],
    script:
        "../scripts/assess_repeats.py"
