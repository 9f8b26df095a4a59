"""What each written file shows, recorded as it is drawn: the ground-truth rows of every
opacity, marker and arrow, written beside the three folders in `ground_truth.csv` (the truth that
saliency maps are checked against; training never reads it), and each file's lungs and
opacities (`drawn_entry`), from which its expert annotations are derived."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxr.synthetic.styles import Style

# One row per planted thing: where it sits in [0, 1] image coordinates (x right, y down), which
# hold after the shards' resize to a square. An opacity is a Gaussian: its box is centre +- 2
# sigma, where it has fallen to e^-2 (14%) of its peak.
GROUND_TRUTH_COLUMNS = ["source_dir", "file", "kind", "x0", "y0", "x1", "y1", "cx", "cy", "sigma"]


def write_ground_truth(path: Path, truth: list[dict]) -> None:
    """The planted opacities, markers and arrows, one row each, coordinates to 6 decimals."""
    import pandas as pd

    from cxr.io import write_csv

    frame = pd.DataFrame(truth, columns=GROUND_TRUTH_COLUMNS)
    coordinates = GROUND_TRUTH_COLUMNS[3:]
    frame[coordinates] = frame[coordinates].astype(float).round(6)
    write_csv(path, frame)


def image_metadata(row: dict) -> dict:
    """The metadata an annotation file's images[] carries, from a row of either metadata layout;
    findings as the collection named them in April 2020 ('COVID-19', not hierarchical)."""
    patient = row["Patientid"] if "Patientid" in row else row["patientid"]
    return {"patientid": patient, "offset": row["offset"], "sex": row["sex"], "age": row["age"],
            "finding": row["finding"].rsplit("/", 1)[-1], "view": row["view"],
            "modality": row["modality"]}  # fmt: skip


def drawn_entry(
    source_dir: str, name: str, style: Style, findings: dict, row: dict, fault: str = ""
) -> dict:
    """What one written file shows, for its annotations: `write_annotations`' `drawn` entry."""
    return {"source_dir": source_dir, "file_name": name, "width": style.width,
            "height": style.height, "metadata": image_metadata(row), "fault": fault,
            "lungs": findings["lungs"], "opacities": findings["opacities"]}  # fmt: skip
