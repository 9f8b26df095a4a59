"""Where the synthetic data set puts things: its folders and the files its readers look for,
and the GUID-like names of web images. Free of numpy and Pillow, so that the workflow can import
these names when it builds the DAG."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# The three folders that mirror `../shared/data`, and the later snapshot of the first.
DISEASE_DIR = "covid-chestxray-dataset"
HEALTHY_DIR = "kermany-normal"
EXTERNAL_DIR = "nih-nofinding"
LATER_DIR = "covid-chestxray-dataset-later"
# Beside the folders, never inside a source root (where curation must account for every file).
GROUND_TRUTH_FILE = "ground_truth.csv"
# The annotation files of the collection's later snapshots, under the collection's root.
ANNOTATIONS_DIR = "annotations"
BOXES_FILE = "imageannotation_ai_lung_bounding_boxes.json"
MASKS_DIR = "lungVAE-masks"
SEVERITY_FILE = "covid-severity-scores.csv"


def hex_name(rng: np.random.Generator) -> str:
    """A GUID-like name, as many web images in the real collection have."""
    return "-".join("".join(rng.choice(list("0123456789ABCDEF"), size=n)) for n in (8, 4, 4, 4, 12))
