"""Entry point of rule split_patients."""

import pandas as pd

from cxr.io import write_csv, write_json
from cxr.logs import run_logged
from cxr.split import image_level_counterfactual, split_patients, summarise


def main(images_csv, fractions, seed, splits_csv, summary_json) -> None:
    images = pd.read_csv(images_csv, dtype={"patient": str}, keep_default_na=False)
    splits = split_patients(images, fractions, seed)
    write_csv(splits_csv, splits)
    write_json(
        summary_json,
        {
            "fractions": fractions,
            "seed": seed,
            "method": "sklearn StratifiedGroupKFold: test fold, then val fold of the rest",
            "counts": summarise(splits),
            "image_level_counterfactual": image_level_counterfactual(
                images, fractions["test"], seed
            ),
        },
    )


sm = snakemake  # noqa: F821
run_logged(
    sm.log[0],
    main,
    sm.input.images,
    dict(sm.params.fractions),
    sm.params.seed,
    sm.output.splits,
    sm.output.summary,
)
