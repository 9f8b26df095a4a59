"""Context of report/marks.html.j2: which curated images carry burnt-in annotation marks, crops
of the largest, and the no-marks protocols' metrics beside the others'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxr.io import read_table
from cxr.marks import mark_reasons
from cxr.report.figures import crop_uri
from cxr.report.formatting import num


def marked_images(images: pd.DataFrame, marks: dict) -> pd.DataFrame:
    """The curated images that carry annotation marks by config's `marks` settings, as the
    no-marks protocols remove them (cxr.marks.mark_reasons)."""
    return images[mark_reasons(images, min_area=marks["min_area"], ids=marks["ids"]) != ""]


def marks_section(
    images: pd.DataFrame,
    marks: dict,
    summaries: dict[str, dict],
    removed: dict[str, pd.DataFrame],
    *,
    image_root: Path,
    max_pixels: int,
    limit: int = 6,
) -> dict:
    """How many images carry marks per class and source, sample crops, and the no-marks
    protocols' metrics beside the primary's."""
    marked = marked_images(images, marks)
    counts = [
        {
            "label": label,
            "source": source,
            "marked": int(len(part[part["id"].isin(marked["id"])])),
            "images": int(len(part)),
        }
        for (label, source), part in images.groupby(["label", "source"], sort=True)
    ]
    samples = []
    with_box = marked[marked["mark_box"].astype(str) != ""].sort_values(
        "mark_area", ascending=False
    )
    for row in with_box.head(limit).to_dict("records"):
        path = Path(row["path"])
        uri = crop_uri(
            path if path.is_absolute() else image_root / path,
            str(row["mark_box"]),
            max_pixels=max_pixels,
        )
        if uri:
            samples.append({"id": row["id"], "label": row["label"], "uri": uri,
                            "area": f"{100 * float(row['mark_area']):.2f}%"})  # fmt: skip
    protocols = []
    for name, summary in summaries.items():
        frame = removed.get(name)
        protocols.append(
            {
                "name": name,
                "removed": 0 if frame is None else len(frame),
                "archs": {
                    arch: {
                        "auc": num((entry.get("roc_auc") or {}).get("mean")),
                        "accuracy": num((entry.get("accuracy") or {}).get("mean")),
                        "n_test": entry.get("n_test"),
                    }
                    for arch, entry in summary.items()
                    if arch != "learning_curve"
                },
            }
        )
    return {
        "settings": marks,
        "n_marked": len(marked),
        "counts": counts,
        "samples": samples,
        "protocols": protocols,
    }


def context(
    *,
    images: pd.DataFrame,
    settings: dict,
    summaries: dict[str, dict],
    removed: dict[str, str | Path],
    image_root: Path,
    max_pixels: int,
) -> dict:
    """The key marks.html.j2 shows; `settings`: config's `marks` section (chroma_threshold,
    min_area, ids); `removed` names each protocol's removed.csv; `max_pixels`: curation's."""
    tables = {name: read_table(path) for name, path in removed.items()}
    section = marks_section(
        images, settings, summaries, tables, image_root=image_root, max_pixels=max_pixels
    )
    return {"marks": section}
