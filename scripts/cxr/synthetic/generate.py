"""The entry point: check the arguments, then write the sources in their order (first snapshot,
Kermany and NIH normals, later snapshot), the ground truth and the annotations, and return a
JSON-safe summary of counts and planted faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxr.errors import ConfigError, DataError
from cxr.synthetic import streams
from cxr.synthetic.annotations import write_annotations
from cxr.synthetic.first_snapshot import (
    choose_marks,
    disease_plan,
    plant_disease_faults,
    write_disease,
)
from cxr.synthetic.healthy import external_plan, healthy_plan, write_external, write_healthy
from cxr.synthetic.later import write_later_snapshot
from cxr.synthetic.names import (
    DISEASE_DIR,
    EXTERNAL_DIR,
    GROUND_TRUTH_FILE,
    HEALTHY_DIR,
    LATER_DIR,
)
from cxr.synthetic.truth import write_ground_truth


def generate_synthetic(
    out_dir: Path,
    *,
    seed: int,
    n_disease_patients: int = 30,
    n_healthy_patients: int = 45,
    n_external_patients: int = 12,
    image_size: int = 128,
    confound: float = 1.0,
    signal: float = 1.0,
    marks: float = 0.15,
    n_later_patients: int = 0,
) -> dict:
    """Write the three synthetic sources under `out_dir`, and with `n_later_patients` a later
    snapshot of the disease source (`write_later_snapshot`), the collection's annotations/ in the
    latest snapshot (`write_annotations`); return a JSON-safe summary of counts and planted faults.
    Same arguments give byte-identical files."""
    out_dir = Path(out_dir)
    _check_args(
        out_dir, seed, n_disease_patients, n_healthy_patients, n_external_patients, image_size,
        confound, signal, marks, n_later_patients,
    )  # fmt: skip
    plan_rng = streams.rng(seed, streams.PLAN)

    rows = disease_plan(plan_rng, n_disease_patients, image_size)
    plant_disease_faults(plan_rng, rows)
    choose_marks(rows, seed, marks)
    truth: list[dict] = []
    drawn: list[dict] = []
    disease_faults = write_disease(out_dir / DISEASE_DIR, rows, seed, signal, truth, drawn)

    healthy_files = healthy_plan(plan_rng, n_healthy_patients)
    healthy_faults, n_confounded = write_healthy(
        out_dir / HEALTHY_DIR, healthy_files, seed, image_size, confound, truth
    )

    external_files = external_plan(plan_rng, n_external_patients)
    write_external(out_dir / EXTERNAL_DIR, external_files, seed, image_size)

    later = None
    if n_later_patients:
        later = write_later_snapshot(
            out_dir / LATER_DIR, out_dir / DISEASE_DIR, rows,
            seed=seed, n_patients=n_later_patients, image_size=image_size, signal=signal,
            truth=truth, drawn=drawn,
        )  # fmt: skip
    write_ground_truth(out_dir / GROUND_TRUTH_FILE, truth)
    # The collection's annotations came with its later snapshots and cover the earlier files too.
    annotated = LATER_DIR if n_later_patients else DISEASE_DIR
    annotations = write_annotations(
        out_dir / annotated, [d for d in drawn if d["source_dir"] == annotated], seed=seed
    )

    def counts(values) -> dict[str, int]:
        keys, n = np.unique(np.asarray(values, dtype=str), return_counts=True)
        return {str(k): int(c) for k, c in zip(keys, n, strict=True)}

    return {
        "parameters": {
            "seed": int(seed),
            "n_disease_patients": int(n_disease_patients),
            "n_healthy_patients": int(n_healthy_patients),
            "n_external_patients": int(n_external_patients),
            "image_size": int(image_size),
            "confound": float(confound),
            "signal": float(signal),
            "marks": float(marks),
            "n_later_patients": int(n_later_patients),
        },
        "disease": {
            "dir": DISEASE_DIR,
            "rows": len(rows),
            "files": len(rows) - 1,
            "patients": len({r["Patientid"] for r in rows}),
            "rows_by_finding": counts([r["finding"] for r in rows]),
            "rows_by_view": counts([r["view"] for r in rows]),
            "rows_by_modality": counts([r["modality"] for r in rows]),
            "faults": disease_faults,
            "coloured_marks": sorted(r["filename"] for r in rows if r.get("_mark")),
        },
        "healthy": {
            "dir": HEALTHY_DIR,
            "files": len(healthy_files) + 1,
            "patients": len({key for key, _ in healthy_files}),
            "confounded_files": n_confounded,
            "faults": healthy_faults,
        },
        "external": {
            "dir": EXTERNAL_DIR,
            "files": len(external_files),
            "patients": len({pid for pid, _ in external_files}),
        },
        "later": later,
        "annotations": annotations,
    }


def _check_args(
    out_dir: Path, seed: int, n_disease: int, n_healthy: int, n_external: int, size: int,
    confound: float, signal: float, marks: float, n_later: int = 0,
) -> None:  # fmt: skip
    if seed < 0:
        raise ConfigError(f"seed={seed}: must be >= 0")
    if n_disease < 10:
        raise ConfigError(f"n_disease_patients={n_disease}: need at least 10 to plant the faults")
    if n_healthy < 6 or n_external < 1:
        raise ConfigError(
            f"n_healthy_patients={n_healthy}, n_external_patients={n_external}: "
            "need at least 6 healthy and 1 external patient"
        )
    if size < 32:
        raise ConfigError(f"image_size={size}: use at least 32 pixels")
    if not 0.0 <= confound <= 1.0:
        raise ConfigError(f"confound={confound}: must lie in [0, 1]")
    if signal < 0:
        raise ConfigError(f"signal={signal}: must be >= 0")
    if not 0.0 <= marks <= 1.0:
        raise ConfigError(f"marks={marks}: must lie in [0, 1] (a fraction of COVID-19 X-rays)")
    if n_later < 0:
        raise ConfigError(f"n_later_patients={n_later}: must be >= 0 (0 = no later snapshot)")
    for name in (DISEASE_DIR, HEALTHY_DIR, EXTERNAL_DIR, LATER_DIR):
        target = out_dir / name
        if target.exists() and any(target.iterdir()):
            raise DataError(
                f"{target} exists and is not empty: remove it or choose another out_dir"
            )
