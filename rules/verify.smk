# The quantities a rerun is judged by, measured from the run's own outputs into one table; the
# command `python scripts/verify.py` (make verify) compares them with expected/<dataset>.json.
rule measure_results:
    input:
        flow=f"{CURATED}/flow.json",
        split_summaries=[f"{SPLITS.format(protocol=p)}/summary.json" for p in PROTOCOLS],
        evaluations=[
            EVAL.format(protocol=p, arch=arch, run=run.name) + ".json"
            for p in PROTOCOLS
            for arch in ARCHITECTURES
            for run in PROTOCOLS[p].runs()
        ],
        audit=f"{AUDIT}/leakage.json",
        saliency=explained_runs(f"{EVAL}.saliency.json"),
    output:
        measured=MEASURED,
    log:
        "logs/measure_results.log",
    conda:
        "../envs/data.yaml"
    params:
        dataset=config["dataset"],
        protocols=list(PROTOCOLS),
        evaluations=[
            {"protocol": p, "architecture": arch, "run": run.name}
            for p in PROTOCOLS
            for arch in ARCHITECTURES
            for run in PROTOCOLS[p].runs()
        ],
        saliency=[
            {"protocol": PRIMARY, "architecture": arch, "run": run}
            for arch in ARCHITECTURES
            for run in explained_run_names()
        ],
    script:
        "../scripts/measure_results.py"
