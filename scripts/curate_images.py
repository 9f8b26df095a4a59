"""Entry point of rule curate_images."""

from cxr.curate import Rules, check_classes, curate
from cxr.io import write_csv, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, outputs: dict, params: dict) -> None:
    curation, labels = params["curation"], params["labels"]
    rules = Rules.from_config(curation, labels, params["chroma_threshold"])
    sources = {name: dict(spec) for name, spec in params["sources"].items()}
    images, exclusions, flow = curate(sources, rules, params["seed"])
    write_csv(outputs["exclusions"], exclusions)
    write_json(outputs["flow"], flow)
    check_classes(images, exclusions, [labels["positive"], labels["negative"]])
    write_csv(outputs["images"], images)


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
