"""Entry point of rule write_shards."""

from pathlib import Path

from cxr.io import read_table, write_json
from cxr.logs import run_logged
from cxr.provenance import record_job
from cxr.shards import write_shards


def main(*, inputs: dict, outputs: dict, params: dict) -> None:
    images = read_table(inputs["images"])
    manifest = write_shards(
        images,
        Path(outputs["manifest"]).parent,
        image_size=params["image_size"],
        count=params["shard_count"],
        max_pixels=params["max_pixels"],
    )
    write_json(outputs["manifest"], manifest)


sm = snakemake  # noqa: F821
run_logged(sm.log[0], main, inputs=dict(sm.input), outputs=dict(sm.output), params=dict(sm.params))
record_job(snakemake, __file__)  # noqa: F821
