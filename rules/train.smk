rule fetch_weights:
    output:
        weights="resources/weights/{arch}.h5",
        checksum="resources/weights/{arch}.h5.sha256",
    log:
        "logs/fetch_weights/{arch}.log",
    conda:
        "../envs/tf.yaml"
    params:
        mirror=config["training"]["weights_mirror"],
    script:
        "../scripts/fetch_weights.py"


rule train_model:
    input:
        manifest="results/shards/manifest.json",
        weights=weights_input,
    output:
        model="results/models/{arch}/seed{seed}/model.keras",
        best="results/models/{arch}/seed{seed}/best.keras",
        history="results/models/{arch}/seed{seed}/history.csv",
        summary="results/models/{arch}/seed{seed}/summary.json",
    log:
        "logs/train_model/{arch}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_model/{arch}/seed{seed}.tsv"
    conda:
        "../envs/tf.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=config["training"]["gpus"],
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        training=lambda wildcards: job_training(wildcards.arch),
        out_dir=lambda wildcards: model_dir(wildcards.arch, wildcards.seed),
    script:
        "../scripts/train_model.py"
