"""Context of report/data.html.j2: the sources, the curation flow and its exclusions, the
composition of the splits, sample images, and the licences and metadata of the included images."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from cxr.images import ImageRejected
from cxr.report.figures import curation_flow_uri, thumbnail_uri

log = logging.getLogger(__name__)

SPLIT_ORDER = ("train", "val", "test", "external")


def source_rows(sources: dict) -> list[dict]:
    """The table of the dataset's sources (validated config: schema defaults filled in)."""
    rows = []
    for name, spec in sources.items():
        download = spec.get("download") or {}
        rows.append(
            {
                "name": name,
                "label": spec["label"],
                "role": spec["role"],
                "kind": spec["kind"],
                "version": spec.get("version", "not stated"),
                "license": spec.get("license", "not stated"),
                "root": spec["root"],
                "origin": download.get("git") or download.get("url") or "",
                "sample": spec.get("sample"),
            }
        )
    return rows


def flow_table(flow: dict) -> dict:
    """Steps x sources: images remaining after each step and what the step removed."""
    names = list(flow["sources"])
    steps = []
    for name in names:
        for step in flow["sources"][name]["steps"]:
            if step["step"] not in steps:
                steps.append(step["step"])
    rows = []
    for step in steps:
        cells = []
        for name in names:
            found = [s for s in flow["sources"][name]["steps"] if s["step"] == step]
            if not found:
                cells.append({"remaining": None, "removed": ""})
                continue
            removed = found[0]["removed"]
            text = ", ".join(f"{reason} {count}" for reason, count in sorted(removed.items()))
            cells.append({"remaining": found[0]["remaining"], "removed": text})
        rows.append({"step": step, "cells": cells})
    totals = [{k: flow["sources"][n][k] for k in ("total", "included", "excluded")} for n in names]
    return {"sources": names, "rows": rows, "totals": totals}


def exclusion_table(exclusions: pd.DataFrame) -> dict:
    """Excluded images per reason and source."""
    if exclusions.empty:
        return {"sources": [], "rows": []}
    counts = exclusions.groupby(["reason", "source"]).size().unstack(fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False, kind="stable").index]
    sources = [str(c) for c in counts.columns]
    rows = [
        {"reason": reason, "counts": [int(v) for v in row], "total": int(row.sum())}
        for reason, row in counts.iterrows()
    ]
    return {"sources": sources, "rows": rows, "total": int(counts.to_numpy().sum())}


def label_conflicts(exclusions: pd.DataFrame) -> list[dict]:
    """Images excluded because the same pixels carry another label in another source, each
    with the image it conflicts with (`detail`)."""
    rows = exclusions[exclusions["reason"] == "label conflict"]
    return rows[["source", "file", "label", "detail"]].to_dict("records")


def empty_sources(sources: dict, flow: dict, exclusions: pd.DataFrame) -> list[dict]:
    """Configured sources that curation left without any image, with the reasons that emptied
    them: an external source that is configured but empty is not 'no external source'."""
    rows = []
    for name, spec in sources.items():
        counts = flow["sources"].get(name)
        if counts is None or counts["included"] > 0:
            continue
        reasons = exclusions.loc[exclusions["source"] == name, "reason"].value_counts()
        ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
        rows.append(
            {
                "name": name,
                "role": spec["role"],
                "label": spec["label"],
                "total": counts["total"],
                "reasons": ", ".join(f"{reason} {int(n)}" for reason, n in ordered),
            }
        )
    return rows


def composition(splits: pd.DataFrame, positive: str) -> dict:
    """Images and patients per class x source x split."""
    present = [s for s in SPLIT_ORDER if s in set(splits["split"])]
    present += sorted(set(splits["split"]) - set(present))
    rows = []
    for (label, source), part in splits.groupby(["label", "source"], sort=True):
        cells = []
        for split in present:
            sub = part[part["split"] == split]
            cells.append({"images": len(sub), "patients": int(sub["patient"].nunique())})
        rows.append({"label": label, "source": source, "cells": cells})
    rows.sort(key=lambda r: (r["label"] != positive, r["source"]))
    totals = []
    for split in present:
        sub = splits[splits["split"] == split]
        totals.append({"images": len(sub), "patients": int(sub["patient"].nunique())})
    return {"splits": present, "rows": rows, "totals": totals}


def licence_table(images: pd.DataFrame) -> list[dict]:
    """Included images per source and licence as written in the source's metadata."""
    frame = images.assign(license=images["license"].replace("", "(none given)"))
    counts = frame.groupby(["source", "license"]).size()
    return [
        {"source": source, "license": licence, "images": int(n)}
        for (source, licence), n in counts.items()
    ]


def metadata_rows(images: pd.DataFrame) -> list[dict]:
    """Included images that carry source metadata (clinical notes, licence or URL)."""
    columns = ["id", "patient", "view", "finding", "license", "url", "notes"]
    has_meta = (images["notes"] != "") | (images["license"] != "") | (images["url"] != "")
    return images.loc[has_meta, columns].sort_values("id").to_dict("records")


def sample_images(
    images: pd.DataFrame,
    *,
    positive: str,
    per_group: int = 4,
    size: int = 96,
    image_root: Path,
    max_pixels: int,
) -> list[dict]:
    """Up to `per_group` thumbnails per class and source, each from a different patient."""
    groups = []
    frame = images.sort_values("id")
    for (label, source), part in frame.groupby(["label", "source"], sort=True):
        picks = part.drop_duplicates("patient").head(per_group)
        thumbs = []
        for row in picks.to_dict("records"):
            path = Path(row["path"])
            if not path.is_absolute():
                path = image_root / path
            try:
                uri, problem = thumbnail_uri(path, size=size, max_pixels=max_pixels), ""
            except ImageRejected as error:
                log.warning("sample image %s: %s", path, error)
                uri, problem = None, error.reason
            thumbs.append(
                {"uri": uri, "id": row["id"], "patient": row["patient"], "problem": problem}
            )
        groups.append(
            {"label": label, "source": source, "role": part["role"].iloc[0], "thumbs": thumbs}
        )
    groups.sort(key=lambda g: (g["label"] != positive, g["role"] != "train", g["source"]))
    return groups


# How many of the annotation entries not used the Data section lists (all are in the CSV).
ANNOTATION_EXCLUSIONS_SHOWN = 12


def annotation_counts(summary: dict | None, exclusions: pd.DataFrame | None) -> dict:
    """Counts per source and per file, and the first annotations not used with their reason."""
    if not summary or not summary.get("configured"):
        return {
            "configured": False,
            "note": (summary or {}).get("note") or "the dataset names no annotations",
        }
    shown = exclusions.head(ANNOTATION_EXCLUSIONS_SHOWN) if exclusions is not None else None
    rows = [] if shown is None else shown.to_dict("records")
    return {
        "configured": True,
        "root": summary["root"],
        "applies_to": summary["applies_to"],
        "per_source": summary["per_source"],
        "files": summary["files"],
        "excluded": summary["excluded"],
        "reasons": summary["reasons"],
        "examples": rows,
        "shown": len(rows),
    }


def context(
    *,
    sources: dict,
    flow: dict,
    exclusions: pd.DataFrame,
    images: pd.DataFrame,
    splits: pd.DataFrame,
    split_summary: dict,
    positive: str,
    image_root: Path,
    max_pixels: int,
    annotation_summary: dict | None = None,
    annotation_exclusions: pd.DataFrame | None = None,
) -> dict:
    """The keys data.html.j2 shows, from config's sources and the curation and split outputs
    (the expert annotations' too, where the dataset has them)."""
    return {
        "sources": source_rows(sources),
        "annotations": annotation_counts(annotation_summary, annotation_exclusions),
        "flow": {
            "picture": curation_flow_uri(flow),
            "table": flow_table(flow),
            "total": flow.get("total"),
            "included": flow.get("included"),
            "excluded": flow.get("excluded"),
            "ids_differing_in_format": flow.get("patient_ids_differing_only_in_format", 0),
        },
        "exclusions": exclusion_table(exclusions),
        "label_conflicts": label_conflicts(exclusions),
        "empty_sources": empty_sources(sources, flow, exclusions),
        "composition": composition(splits, positive),
        "split_method": split_summary.get("method", ""),
        "split_fractions": split_summary.get("fractions", {}),
        "licences": licence_table(images),
        "metadata": metadata_rows(images),
        "samples": sample_images(
            images, positive=positive, image_root=image_root, max_pixels=max_pixels
        ),
    }
