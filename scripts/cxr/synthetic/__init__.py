"""A small synthetic data set laid out exactly like the real sources, generated from a seed
(`generate_synthetic`): the embedded default, which needs nothing else.

Three folders mirror `../shared/data`: `covid-chestxray-dataset/` (ieee8023 metadata.csv of
March 2020 + images/, with the real snapshot's planted faults), `kermany-normal/` (healthy,
Kermany names) and `nih-nofinding/` (healthy adults, NIH names); optionally a later snapshot of
the first, and the collection's expert annotations. Disease images carry bright opacities inside
the lungs (`signal`); healthy images carry a source style with probability `confound`, the
positive control of the leakage audit (`confound=0`: the negative control). Where each opacity,
marker and arrow was drawn is written beside the folders, in `ground_truth.csv`.

One module per job:
- `names`: folder and file names (no numpy: the workflow imports them when it builds the DAG);
- `streams`: the table of random streams, one per source and purpose;
- `styles`: how each source's images are sized and saved;
- `drawing`: one chest picture, a patient's anatomy, the red arrow of published figures;
- `first_snapshot`: the COVID-19 collection of March 2020, its planted faults and marks;
- `healthy`: the Kermany-style and NIH-style normals;
- `later`: the collection's later snapshot;
- `truth`: what each file shows, as it is drawn, and the ground-truth file;
- `findings`: lung boxes, lung masks and severity scores of one picture;
- `annotations`: the collection's annotations/ folder with its bad entries;
- `generate`: the entry point that writes it all and summarises it.
"""

import importlib
import pkgutil
from typing import TYPE_CHECKING

from cxr.synthetic.names import (
    ANNOTATIONS_DIR,
    BOXES_FILE,
    DISEASE_DIR,
    EXTERNAL_DIR,
    GROUND_TRUTH_FILE,
    HEALTHY_DIR,
    LATER_DIR,
    MASKS_DIR,
    SEVERITY_FILE,
)

# The package's other public names come from modules that need numpy and Pillow: `__getattr__`
# imports them on first use, so that importing the package, or the names above as
# rules/common.smk does when Snakemake builds the DAG, loads neither. The imports below are for
# static readers only (type checkers; scripts/forcerun.py, which finds the rules to rerun after
# a module changes).
if TYPE_CHECKING:
    from cxr.synthetic.annotations import SEVERITY_COLUMNS, write_annotations
    from cxr.synthetic.drawing import (
        ARROW_RGB,
        BORDER,
        JITTER,
        MARKER_SIDE,
        POSE,
        Anatomy,
        render_chest,
    )
    from cxr.synthetic.findings import (
        OPACITY_FULL,
        REFERENCE_LUNG_AREA,
        lung_box,
        lung_mask,
        severity_scores,
    )
    from cxr.synthetic.first_snapshot import METADATA_COLUMNS, SCRIPT_NOTE
    from cxr.synthetic.generate import generate_synthetic
    from cxr.synthetic.later import LATER_COLUMNS, write_later_snapshot
    from cxr.synthetic.truth import GROUND_TRUTH_COLUMNS, write_ground_truth

__all__ = [
    "ANNOTATIONS_DIR",
    "ARROW_RGB",
    "BORDER",
    "BOXES_FILE",
    "DISEASE_DIR",
    "EXTERNAL_DIR",
    "GROUND_TRUTH_COLUMNS",
    "GROUND_TRUTH_FILE",
    "HEALTHY_DIR",
    "JITTER",
    "LATER_COLUMNS",
    "LATER_DIR",
    "MARKER_SIDE",
    "MASKS_DIR",
    "METADATA_COLUMNS",
    "OPACITY_FULL",
    "POSE",
    "REFERENCE_LUNG_AREA",
    "SCRIPT_NOTE",
    "SEVERITY_COLUMNS",
    "SEVERITY_FILE",
    "Anatomy",
    "generate_synthetic",
    "lung_box",
    "lung_mask",
    "render_chest",
    "severity_scores",
    "write_annotations",
    "write_ground_truth",
    "write_later_snapshot",
]


def __getattr__(name: str) -> object:
    """A name of `__all__` that only static readers see bound above: found in the package's
    modules, imported now."""
    if name in __all__:
        for module in pkgutil.iter_modules(__path__):
            namespace = vars(importlib.import_module(f"{__name__}.{module.name}"))
            if name in namespace:
                globals()[name] = namespace[name]
                return namespace[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
