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
    # Before the border probe (which only the audit reads): every architecture's chain of
    # features, heads and maps starts here.
    priority: 1
    conda:
        tensorflow_env("extract_features")
    threads: config["training"]["threads"]
    resources:
        gpu=TENSORFLOW_GPUS,
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        architecture="{arch}",
        training=base_training,
        seed=config["seed"],
        check_images=config["training"]["saved_base_check"],
    script:
        "../scripts/extract_features.py"


rule train_models:
    input:
        features=f"{FEATURES}/features.npy",
        table=f"{FEATURES}/features.csv",
        base=f"{FEATURES}/base.keras",
        feature_summary=f"{FEATURES}/summary.json",
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        # In the order of params.protocols.
        splits=[f"{SPLITS.format(protocol=p)}/splits.csv" for p in PROTOCOLS],
        # In the order of params.repeats (REPEATED).
        repeat_splits=[f"{REPEATS.format(protocol=p)}/splits.csv" for p in REPEATED],
    output:
        # One list per kind of file, in the order of params.runs (architecture_runs).
        model=architecture_runs(f"{MODEL}/model.keras"),
        best=architecture_runs(f"{MODEL}/best.keras"),
        history=architecture_runs(f"{MODEL}/history.csv"),
        summary=architecture_runs(f"{MODEL}/summary.json"),
        predictions=architecture_runs(f"{EVAL}.predictions.csv"),
        repeat_predictions=[
            f"{REPEATS.format(protocol=p)}/{{arch}}.predictions.csv" for p in REPEATED
        ],
    log:
        "logs/train_models/{arch}.log",
    benchmark:
        "results/benchmarks/train_models/{arch}.tsv"
    priority: 1
    conda:
        tensorflow_env("train_models")
    threads: config["training"]["threads"]
    resources:
        gpu=TENSORFLOW_GPUS,
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        architecture="{arch}",
        protocols=list(PROTOCOLS),
        runs=run_plan,
        repeats=repeat_plan,
        checkpoint=config["evaluation"]["checkpoint"],
    script:
        "../scripts/train_models.py"
