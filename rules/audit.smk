rule probe_borders:
    input:
        manifest="results/shards/manifest.json",
        weights=lambda wildcards: (
            [f"resources/weights/{AUDIT_ARCHITECTURE}.h5"] if USE_IMAGENET else []
        ),
    output:
        probe="results/audit/border_probe.json",
        examples=report(
            "results/audit/border_examples.png",
            caption="../report/captions/border_examples.rst",
            category="Audit",
        ),
    log:
        "logs/probe_borders.log",
    benchmark:
        "results/benchmarks/probe_borders.tsv"
    conda:
        "../envs/tf.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=config["training"]["mem_mb"],
    params:
        architecture=AUDIT_ARCHITECTURE,
        training=job_training(AUDIT_ARCHITECTURE),
        audit={k: config["audit"][k] for k in ("border_fraction", "cv_folds")},
        seed=config["seed"],
        n_boot=config["evaluation"]["bootstrap"],
    script:
        "../scripts/probe_borders.py"


rule audit_leakage:
    input:
        images="results/curated/images.csv",
        exclusions="results/curated/exclusions.csv",
        splits="results/splits/splits.csv",
        split_summary="results/splits/summary.json",
        border_probe="results/audit/border_probe.json",
    output:
        audit="results/audit/leakage.json",
        features="results/audit/trivial_features.csv",
    log:
        "logs/audit_leakage.log",
    benchmark:
        "results/benchmarks/audit_leakage.tsv"
    conda:
        "../envs/data.yaml"
    params:
        audit=config["audit"],
        seed=config["seed"],
        n_boot=config["evaluation"]["bootstrap"],
        max_pixels=config["curation"]["max_pixels"],
    script:
        "../scripts/audit_leakage.py"
