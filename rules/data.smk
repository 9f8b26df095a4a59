rule generate_synthetic_data:
    output:
        touch("resources/synthetic/.complete"),
    log:
        "logs/generate_synthetic_data.log",
    conda:
        "../envs/data.yaml"
    params:
        settings=DATASET.get("synthetic", {}),
        seed=config["seed"],
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
    script:
        "../scripts/generate_synthetic_data.py"


rule fetch_source:
    output:
        touch("resources/sources/{source}.complete"),
    log:
        "logs/fetch_source/{source}.log",
    conda:
        "../envs/data.yaml"
    params:
        spec=lambda wildcards: SOURCES[wildcards.source],
    script:
        "../scripts/fetch_source.py"


rule curate_images:
    input:
        source_inputs(),
    output:
        images="results/curated/images.csv",
        exclusions="results/curated/exclusions.csv",
        flow="results/curated/flow.json",
    log:
        "logs/curate_images.log",
    benchmark:
        "results/benchmarks/curate_images.tsv"
    conda:
        "../envs/data.yaml"
    params:
        sources=SOURCES,
        curation=config["curation"],
        labels=config["labels"],
        seed=config["seed"],
    script:
        "../scripts/curate_images.py"


rule split_patients:
    input:
        images="results/curated/images.csv",
    output:
        splits="results/splits/splits.csv",
        summary="results/splits/summary.json",
    log:
        "logs/split_patients.log",
    conda:
        "../envs/data.yaml"
    params:
        fractions=config["splits"],
        seed=config["seed"],
    script:
        "../scripts/split_patients.py"


rule write_shards:
    input:
        images="results/curated/images.csv",
        splits="results/splits/splits.csv",
    output:
        manifest="results/shards/manifest.json",
    log:
        "logs/write_shards.log",
    benchmark:
        "results/benchmarks/write_shards.tsv"
    conda:
        "../envs/tf.yaml"
    params:
        image_size=config["shards"]["image_size"],
        per_split=config["shards"]["per_split"],
        max_pixels=config["curation"]["max_pixels"],
    script:
        "../scripts/write_shards.py"
