"""Entry point of rule write_shards."""

from pathlib import Path

import pandas as pd

from cxr.io import write_json
from cxr.logs import run_logged
from cxr.shards import write_shards


def main(images_csv, splits_csv, manifest_json, image_size, per_split, max_pixels) -> None:
    images = pd.read_csv(images_csv, keep_default_na=False)
    splits = pd.read_csv(splits_csv, keep_default_na=False)
    manifest = write_shards(
        images,
        splits,
        Path(manifest_json).parent,
        image_size=image_size,
        shards_per_split=per_split,
        max_pixels=max_pixels,
    )
    write_json(manifest_json, manifest)


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    sm.input.images,
    sm.input.splits,
    sm.output.manifest,
    sm.params.image_size,
    sm.params.per_split,
    sm.params.max_pixels,
)
