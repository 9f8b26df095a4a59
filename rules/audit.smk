rule probe_borders:
    input:
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        weights=lambda wildcards: (
            [f"resources/weights/{AUDIT_ARCHITECTURE}.h5"] if USE_IMAGENET else []
        ),
    output:
        probe=f"{AUDIT}/border_probe.json",
        examples=report(
            f"{AUDIT}/border_examples.png",
            caption="../report/captions/border_examples.rst",
            category="Audit",
        ),
    log:
        "logs/probe_borders.log",
    benchmark:
        "results/benchmarks/probe_borders.tsv"
    conda:
        tensorflow_env("probe_borders")
    threads: config["training"]["threads"]
    resources:
        gpu=TENSORFLOW_GPUS,
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
        images=f"{CURATED}/images.csv",
        exclusions=f"{CURATED}/exclusions.csv",
        splits=f"{SPLITS.format(protocol=PRIMARY)}/splits.csv",
        split_summary=f"{SPLITS.format(protocol=PRIMARY)}/summary.json",
        border_probe=f"{AUDIT}/border_probe.json",
    output:
        audit=f"{AUDIT}/leakage.json",
        features=f"{AUDIT}/trivial_features.csv",
    log:
        "logs/audit_leakage.log",
    benchmark:
        "results/benchmarks/audit_leakage.tsv"
    conda:
        "../envs/data.yaml"
    params:
        audit={
            k: config["audit"][k]
            for k in (
                "border_fraction",
                "cv_folds",
                "near_duplicate_bits",
                "auc_flag",
                "auc_warn",
            )
        },
        seed=config["seed"],
        n_boot=config["evaluation"]["bootstrap"],
        max_pixels=config["curation"]["max_pixels"],
    script:
        "../scripts/audit_leakage.py"
