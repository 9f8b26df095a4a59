"""Curation: every input row or file ends in exactly one place, the curated image list or the
exclusion log with a reason; flow counts record each step. included + excluded = total."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cxr.errors import DataError
from cxr.images import ImageRejected, load_image, resolve_inside
from cxr.sources import load_source, rule_reasons

log = logging.getLogger(__name__)

IMAGE_COLUMNS = [
    "id",
    "source",
    "role",
    "label",
    "y",
    "patient",
    "path",
    "file",
    "sha256",
    "width",
    "height",
    "mode",
    "format",
    "bit_depth",
    "mark_area",
    "mark_box",
    "view",
    "finding",
    "modality",
    "license",
    "url",
    "notes",
    "record",
]
EXCLUSION_COLUMNS = ["record", "source", "file", "patient", "label", "step", "reason", "detail"]


@dataclass(frozen=True)
class Rules:
    """Selection rules from config; the defaults are the article's."""

    disease_finding: str = "COVID-19"
    views: tuple[str, ...] = ("PA",)
    modality: str = "X-ray"
    max_pixels: int = 50_000_000
    min_side: int = 32
    positive_label: str = "covid"
    # Pixels with max(R,G,B) - min(R,G,B) at least this are coloured (annotation marks).
    chroma_threshold: int = 60

    @classmethod
    def from_config(cls, curation: dict, labels: dict, chroma_threshold: int) -> Rules:
        """The rules of config's `curation` and `labels` sections and `marks.chroma_threshold`."""
        return cls(
            disease_finding=curation["disease_finding"],
            views=tuple(curation["views"]),
            modality=curation["modality"],
            max_pixels=curation["max_pixels"],
            min_side=curation["min_side"],
            positive_label=labels["positive"],
            chroma_threshold=chroma_threshold,
        )


@dataclass
class Flow:
    """Counts at each curation step, in order, for flow.json and the report's picture."""

    steps: list[dict] = field(default_factory=list)

    def add(self, step: str, remaining: int, removed: dict[str, int]) -> None:
        self.steps.append({"step": step, "remaining": remaining, "removed": removed})


def reason_family(reason: str) -> str:
    """Group detailed reasons ('view 'AP', not PA') into families for flow counts."""
    return reason.split(" ", 1)[0] if reason.startswith(("view", "finding", "modality")) else reason


def curate(
    sources: dict[str, dict], rules: Rules, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Apply rules, decode every candidate image, drop duplicates, sample; return
    (images, exclusions, flow) where len(images) + len(exclusions) == total inputs."""
    included: list[dict] = []
    excluded: list[dict] = []
    flows: dict[str, dict] = {}
    seen_hashes: dict[str, str] = {}
    for name, spec in sources.items():
        root = Path(spec["root"])
        records = load_source(name, spec)
        total = len(records)
        log.info("source %s: %d input rows/files from %s", name, total, root)
        flow = Flow()
        flow.add("input", total, {})

        def exclude(row: dict, step: str, reason: str, detail: str = "", name: str = name) -> None:
            excluded.append(
                {
                    "record": row["record"],
                    "source": name,
                    "file": row["file"],
                    "patient": row["patient"],
                    "label": row["label"],
                    "step": step,
                    "reason": reason,
                    "detail": detail,
                }
            )

        # Step 1: what the adapter already knew (no metadata row, no patient key, ...).
        pre = records[records["pre_exclusion"] != ""]
        for row in pre.to_dict("records"):
            exclude(row, "source", row["pre_exclusion"])
        records = records[records["pre_exclusion"] == ""]
        flow.add("listed with patient key", len(records), _count(pre["pre_exclusion"]))

        # Step 2: metadata rules (modality, finding, view).
        reasons = rule_reasons(name, spec, records, rules)
        failed = records[reasons != ""]
        for row, reason in zip(failed.to_dict("records"), reasons[reasons != ""], strict=True):
            exclude(row, "rules", reason)
        records = records[reasons == ""]
        flow.add("matches rules", len(records), _count(reasons[reasons != ""].map(reason_family)))

        # Step 3: the file must be inside the root and decode as a usable image.
        decoded, removed = [], {}
        for i, row in enumerate(records.to_dict("records"), start=1):
            try:
                path = resolve_inside(root, row["file"])
                _, info = load_image(
                    path,
                    max_pixels=rules.max_pixels,
                    min_side=rules.min_side,
                    chroma_threshold=rules.chroma_threshold,
                )
            except ImageRejected as exc:
                # Name files as the source does, not by absolute paths: the log must not
                # depend on where the workflow runs (reruns elsewhere give the same bytes).
                detail = exc.detail.replace(os.path.realpath(root), spec["root"])
                detail = detail.replace(str(root / row["file"]), row["file"])
                exclude(row, "image", exc.reason, detail)
                removed[exc.reason] = removed.get(exc.reason, 0) + 1
                continue
            decoded.append({**row, "info": info, "path": str(root / row["file"])})
            if i % 200 == 0:
                log.info("source %s: decoded %d/%d images", name, i, len(records))
        flow.add("decodes", len(decoded), removed)

        # Step 4: exact duplicates by decoded pixels, across all sources (first one wins).
        unique, dupes = [], 0
        for row in decoded:
            digest = row["info"].pixel_sha256
            image_id = f"{name}/{row['file']}"
            if digest in seen_hashes:
                exclude(
                    row, "duplicates", "duplicate image", f"same pixels as {seen_hashes[digest]}"
                )
                dupes += 1
                continue
            seen_hashes[digest] = image_id
            unique.append(row)
        flow.add("unique pixels", len(unique), {"duplicate image": dupes} if dupes else {})

        # Step 5: the article sampled a fixed number of images of some sources.
        keep = unique
        sample = spec.get("sample")
        if sample is not None and len(unique) > sample:
            rng = np.random.default_rng(seed)
            chosen = set(rng.choice(len(unique), size=sample, replace=False).tolist())
            keep = [r for i, r in enumerate(unique) if i in chosen]
            for i, row in enumerate(unique):
                if i not in chosen:
                    exclude(row, "sample", "not sampled", f"{sample} of {len(unique)}, seed {seed}")
            flow.add(f"sampled {sample}", len(keep), {"not sampled": len(unique) - sample})

        for row in keep:
            info = row["info"]
            included.append(
                {
                    "id": f"{name}/{row['file']}",
                    "source": name,
                    "role": spec.get("role", "train"),
                    "label": row["label"],
                    "y": int(row["label"] == rules.positive_label),
                    "patient": row["patient"],
                    "path": row["path"],
                    "file": row["file"],
                    "sha256": info.pixel_sha256,
                    "width": info.width,
                    "height": info.height,
                    "mode": info.mode,
                    "format": info.format,
                    "bit_depth": info.bit_depth,
                    "mark_area": info.mark_area,
                    "mark_box": info.mark_box,
                    "view": row["view"],
                    "finding": row["finding"],
                    "modality": row["modality"],
                    "license": row["license"],
                    "url": row["url"],
                    "notes": row["notes"],
                    "record": row["record"],
                }
            )
        flows[name] = {
            "total": total,
            "included": len(keep),
            "excluded": total - len(keep),
            "steps": flow.steps,
        }
        log.info("source %s: %d included, %d excluded", name, len(keep), total - len(keep))

    images = pd.DataFrame(included, columns=IMAGE_COLUMNS)
    exclusions = pd.DataFrame(excluded, columns=EXCLUSION_COLUMNS)
    total = sum(f["total"] for f in flows.values())
    if len(images) + len(exclusions) != total:  # an accounting bug must never pass silently
        raise AssertionError(f"accounting: {len(images)} + {len(exclusions)} != {total}")
    flow = {
        "sources": flows,
        "total": total,
        "included": len(images),
        "excluded": len(exclusions),
        "excluded_by_reason": _count(exclusions["reason"]),
        "included_by_label": _count(images["label"]),
    }
    return images, exclusions, flow


def check_classes(images: pd.DataFrame, exclusions: pd.DataFrame, labels: list[str]) -> None:
    """Fail before training when a class is empty, naming the rule that emptied it."""
    trainable = images[images["role"] == "train"]
    for label in labels:
        if (trainable["label"] == label).any():
            continue
        lost = exclusions[exclusions["label"] == label]
        if lost.empty:
            hint = "no source with this label has any input; check sources in config"
        else:
            top = lost["reason"].map(reason_family).value_counts()
            hint = "; ".join(f"{n} removed by '{r}'" for r, n in top.items())
        raise DataError(
            f"class {label!r} is empty after curation ({hint}). Relax the rule in config "
            "(curation.views / curation.disease_finding / curation.modality) or fix the source."
        )


def _count(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(values.value_counts().items())}
