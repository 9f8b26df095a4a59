rule explain_model:
    input:
        model=model_file,
        base=f"{FEATURES}/base.keras",
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        predictions=f"{EVAL}.predictions.csv",
        images=f"{CURATED}/images.csv",
        synthetic=ground_truth_input,
    output:
        maps=f"{EVAL}.saliency.npz",
        statistics=f"{EVAL}.saliency.json",
    log:
        "logs/explain_model/{protocol}/{arch}/{run}.log",
    benchmark:
        "results/benchmarks/explain_model/{protocol}/{arch}/{run}.tsv"
    conda:
        "../envs/tf.yaml"
    threads: config["training"]["threads"]
    resources:
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        architecture="{arch}",
        protocol="{protocol}",
        run=run_params,
        training=lambda wildcards: job_training(wildcards.arch, wildcards.protocol),
        saliency={
            k: SALIENCY[k]
            for k in (
                "gradcam_min_cells",
                "occlusion_patch",
                "occlusion_stride",
                "corner_fraction",
            )
        },
        border_fraction=config["audit"]["border_fraction"],
        threshold=config["evaluation"]["threshold"],
        n_boot=config["evaluation"]["bootstrap"],
        seed=config["seed"],
        labels=config["labels"],
        ground_truth=GROUND_TRUTH if "synthetic" in DATASET else None,
    script:
        "../scripts/explain_model.py"
