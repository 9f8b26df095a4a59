"""Entry point of rule curate_images."""

from cxr.curate import Rules, check_classes, curate
from cxr.io import write_csv, write_json
from cxr.logs import run_logged


def main(sources, curation, labels, seed, images_csv, exclusions_csv, flow_json) -> None:
    rules = Rules(
        disease_finding=curation["disease_finding"],
        views=tuple(curation["views"]),
        modality=curation["modality"],
        max_pixels=curation["max_pixels"],
        min_side=curation["min_side"],
        positive_label=labels["positive"],
    )
    images, exclusions, flow = curate(sources, rules, seed)
    write_csv(exclusions_csv, exclusions)
    write_json(flow_json, flow)
    check_classes(images, exclusions, [labels["positive"], labels["negative"]])
    write_csv(images_csv, images)


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    {k: dict(v) for k, v in sm.params.sources.items()},
    dict(sm.params.curation),
    dict(sm.params.labels),
    sm.params.seed,
    sm.output.images,
    sm.output.exclusions,
    sm.output.flow,
)
