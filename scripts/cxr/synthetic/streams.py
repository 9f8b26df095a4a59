"""The random streams of the synthetic data set, in one table. A stream is seeded with
[seed, number, *keys]: one per source and purpose, keyed by image index or patient number where
each image or patient has its own. So what one stream draws never shifts another: an image's
pixels do not depend on how many images came before it, marking an image changes no other, and
every image of one patient shows the same chest. The numbers are those the data set has always
used; changing one changes the bytes written. (`render_chest` also seeds a stream for the
opacities from the image's stream, so that images differing in `signal` alone share the rest.)"""

from __future__ import annotations

import numpy as np

PLAN = 0  # disease rows (and their styles), planted faults, then the Kermany and NIH file lists
DISEASE_IMAGE = 1  # key: row index; a disease image's pose, opacities, gain, noise (CT: anatomy)
# Note: [seed, 2] seeds the same generator as [seed, 2, 0], HEALTHY_IMAGE's first image (numpy
# pads the seed with zeros); kept, since changing either changes the bytes.
HEALTHY_STYLE = 2  # which Kermany images carry the confound, their styles and unusual modes
HEALTHY_IMAGE = 2  # key: file index; a Kermany image's pose, gain, noise, marker corner
EXTERNAL_IMAGE = 3  # key: file index; an NIH image's pose, gain, noise
EXTERNAL_STYLE = 4  # key: file index; an NIH image's size
MARKS = 5  # which COVID-19 X-rays get a red arrow (one permutation: more marks, a superset)
ARROWS = 6  # key: row index; where the arrow on a marked disease image points, its length
LATER_PLAN = 7  # later snapshot: images per new patient, new rows' values, re-uploads' names
LATER_STYLE = 8  # key: new image index; a new hospital image's size
LATER_IMAGE = 9  # key: new image index; a new hospital image's pose, opacities, gain, noise
ANNOTATIONS = 11  # which images each annotation file covers, and its bad entries
DISEASE_EXTENSIONS = 99  # .jpeg or .jpg for each disease JPEG file
DISEASE_ANATOMY = 101  # key: patient id; a disease patient's chest (also their follow-ups')
HEALTHY_ANATOMY = 102  # key: the number of IM-NNNN; a Kermany patient's chest
EXTERNAL_ANATOMY = 103  # key: NIH patient id; an NIH patient's chest
LATER_ANATOMY = 107  # key: patient id; the chest of a patient new in the later snapshot


def rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """The generator of `stream` (a number of the table above) for `seed`, and for the image or
    patient `keys` where the stream has one per image or patient."""
    return np.random.default_rng([seed, stream, *keys])
