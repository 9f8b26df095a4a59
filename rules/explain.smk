rule explain_model:
    input:
        # train_models rewrites every run of an architecture, so a new run (a seed, a protocol)
        # reruns the maps too. ancient() inputs would spare them, but Snakemake then also misses
        # a change of the head's settings: it skips the parameter check of jobs downstream of a
        # job that reruns, and ancient() inputs stop the rerun from reaching them.
        model=model_file,
        base=f"{FEATURES}/base.keras",
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
        predictions=f"{EVAL}.predictions.csv",
        images=f"{CURATED}/images.csv",
        synthetic=ground_truth_input,
        lungs=f"{ANNOTATIONS}/lungs.npz",
    output:
        maps=f"{EVAL}.saliency.npz",
        statistics=f"{EVAL}.saliency.json",
        # Seconds per method and per image: wall-clock, so not byte-stable across reruns.
        cost=f"{EVAL}.saliency.cost.json",
        # Attention on the lungs the annotations draw (cxr.lung_attention) and the model
        # randomisation sanity check (cxr.randomisation).
        lungs=f"{EVAL}.lungs.json",
        randomisation=f"{EVAL}.randomisation.json",
    log:
        "logs/explain_model/{protocol}/{arch}/{run}.log",
    benchmark:
        "results/benchmarks/explain_model/{protocol}/{arch}/{run}.tsv"
    conda:
        tensorflow_env("explain_model")
    threads: config["training"]["threads"]
    resources:
        gpu=TENSORFLOW_GPUS,
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
                "external_per_source",
                "randomisation_images",
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
