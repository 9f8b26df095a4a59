rule fetch_weights:
    output:
        weights="resources/weights/{arch}.h5",
        checksum="resources/weights/{arch}.h5.sha256",
    log:
        "logs/fetch_weights/{arch}.log",
    # Runs where Snakemake runs (the login node): compute nodes may have no internet.
    localrule: True
    conda:
        "../envs/tf.yaml"
    params:
        mirror=config["training"]["weights_mirror"],
    script:
        "../scripts/fetch_weights.py"


rule extract_features:
    input:
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        weights=weights_input,
    output:
        base=f"{FEATURES}/base.keras",
        features=f"{FEATURES}/features.npy",
        table=f"{FEATURES}/features.csv",
        summary=f"{FEATURES}/summary.json",
    log:
        "logs/extract_features/{arch}.log",
    benchmark:
        "results/benchmarks/extract_features/{arch}.tsv"
    conda:
        tensorflow_env("extract_features")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        architecture="{arch}",
        training=base_training,
        seed=config["seed"],
        check_images=config["training"]["saved_base_check"],
    script:
        "../scripts/extract_features.py"


rule train_model:
    input:
        features=f"{FEATURES}/features.npy",
        table=f"{FEATURES}/features.csv",
        base=f"{FEATURES}/base.keras",
        feature_summary=f"{FEATURES}/summary.json",
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        splits=f"{SPLITS}/splits.csv",
    output:
        model=f"{MODEL}/model.keras",
        best=f"{MODEL}/best.keras",
        history=f"{MODEL}/history.csv",
        summary=f"{MODEL}/summary.json",
    log:
        "logs/train_model/{protocol}/{arch}/{run}.log",
    benchmark:
        "results/benchmarks/train_model/{protocol}/{arch}/{run}.tsv"
    conda:
        tensorflow_env("train_model")
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        architecture="{arch}",
        protocol="{protocol}",
        run=run_params,
        training=lambda wildcards: job_training(wildcards.arch, wildcards.protocol),
    script:
        "../scripts/train_model.py"
