from cxr import listing as cxr_listing


rule generate_synthetic_data:
    output:
        directory(SYNTHETIC),
    log:
        "logs/generate_synthetic_data.log",
    # Runs where Snakemake runs: a few seconds, not worth a cluster job.
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        settings=DATASET.get("synthetic", {}),
        seed=config["seed"],
        out_dir=lambda wildcards, output: output[0],
    script:
        "../scripts/generate_synthetic_data.py"


rule fetch_source:
    output:
        touch("resources/sources/{source}.complete"),
    log:
        "logs/fetch_source/{source}.log",
    # Runs where Snakemake runs (the login node): compute nodes may have no internet.
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        spec=fetch_spec,
    script:
        "../scripts/fetch_source.py"


# Snakemake sees a source as its root folder (or the marker of the rule that made it), so an
# edit under the root (metadata.csv changed in place, an image added to a subfolder) would
# leave curation "up to date". Each source's listing (name, kind, size and time of every entry
# under its root) is an input of curate_images: rule list_sources writes it once the source
# exists, and every run rewrites it here, before the DAG is built, when what is under the root
# changed (and leaves it alone when not). Jobs that a cluster runs skip this.
LISTING = f"{CURATED}/listing/{{source}}.tsv"
if workflow.is_main_process:
    cxr_listing.refresh_listings({n: s["root"] for n, s in SOURCES.items()}, LISTING)


rule list_sources:
    input:
        source_inputs(),
    output:
        listing=LISTING,
    log:
        "logs/list_sources/{source}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        root=lambda wildcards: SOURCES[wildcards.source]["root"],
    script:
        "../scripts/list_sources.py"


rule curate_images:
    input:
        source_inputs(),
        listings=expand(LISTING, source=list(SOURCES)),
    output:
        images=f"{CURATED}/images.csv",
        exclusions=f"{CURATED}/exclusions.csv",
        flow=f"{CURATED}/flow.json",
    log:
        "logs/curate_images.log",
    benchmark:
        "results/benchmarks/curate_images.tsv"
    conda:
        "../envs/data.yaml"
    params:
        sources=curation_sources(),
        curation=config["curation"],
        chroma_threshold=config["marks"]["chroma_threshold"],
        labels=config["labels"],
        seed=config["seed"],
    script:
        "../scripts/curate_images.py"


# The dataset's `annotations` (if any), read as a step of curation: per curated image of the
# sources they apply to, its lung region (mask, else the union of its boxes, in the square the
# shards resize to) and its severity scores; every entry not used is logged with its reason.
# Reruns when a source changes (its listing), as curation does.
rule curate_annotations:
    input:
        source_inputs(),
        images=f"{CURATED}/images.csv",
        listings=expand(LISTING, source=list(SOURCES)),
    output:
        table=f"{ANNOTATIONS}/images.csv",
        lungs=f"{ANNOTATIONS}/lungs.npz",
        exclusions=f"{ANNOTATIONS}/exclusions.csv",
        summary=f"{ANNOTATIONS}/summary.json",
    log:
        "logs/curate_annotations.log",
    conda:
        "../envs/data.yaml"
    params:
        annotations=DATASET.get("annotations"),
        image_size=config["shards"]["image_size"],
        max_pixels=config["curation"]["max_pixels"],
    script:
        "../scripts/curate_annotations.py"


rule split_protocol:
    input:
        images=f"{CURATED}/images.csv",
    output:
        splits=f"{SPLITS}/splits.csv",
        removed=f"{SPLITS}/removed.csv",
        summary=f"{SPLITS}/summary.json",
    log:
        "logs/split_protocol/{protocol}.log",
    conda:
        "../envs/data.yaml"
    params:
        split=lambda wildcards: PROTOCOLS[wildcards.protocol].split_settings(),
        marks=split_marks,
    script:
        "../scripts/split_protocol.py"


# A protocol's repeated splits (protocols.<name>.repeats), in one table: repeat k is the
# protocol's split rule with split seed split_seed + k.
rule split_repeats:
    input:
        images=f"{CURATED}/images.csv",
    output:
        splits=f"{REPEATS}/splits.csv",
        summary=f"{REPEATS}/summary.json",
    log:
        "logs/split_repeats/{protocol}.log",
    conda:
        "../envs/data.yaml"
    params:
        split=lambda wildcards: PROTOCOLS[wildcards.protocol].split_settings(),
        marks=split_marks,
        seeds=lambda wildcards: PROTOCOLS[wildcards.protocol].repeat_seeds(),
    script:
        "../scripts/split_repeats.py"


rule write_shards:
    input:
        images=f"{CURATED}/images.csv",
    output:
        manifest=f"{SHARDS}/manifest.json",
        shards=SHARD_FILES,
    log:
        "logs/write_shards.log",
    benchmark:
        "results/benchmarks/write_shards.tsv"
    conda:
        "../envs/tf.yaml"
    params:
        image_size=config["shards"]["image_size"],
        shard_count=config["shards"]["count"],
        max_pixels=config["curation"]["max_pixels"],
    script:
        "../scripts/write_shards.py"
