"""Entry point of rule curate_annotations."""

from cxr.annotations import empty_annotations, read_annotations, write_annotations
from cxr.io import read_table
from cxr.logs import run_logged
from cxr.provenance import record_job


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    settings = params["annotations"]
    if settings is None:
        found = empty_annotations(
            "the dataset names no annotations (datasets.<name>.annotations)",
            size=params["image_size"],
        )
    else:
        found = read_annotations(
            settings["root"],
            read_table(inputs["images"]),
            settings["applies_to"],
            params["image_size"],
            max_pixels=params["max_pixels"],
        )
    write_annotations(
        found,
        table_path=outputs["table"],
        masks_path=outputs["lungs"],
        exclusions_path=outputs["exclusions"],
        summary_path=outputs["summary"],
    )


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input), outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
