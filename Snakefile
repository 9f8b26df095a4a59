from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/audit.smk"
include: "rules/explain.smk"
include: "rules/report.smk"
include: "rules/verify.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
