"""Curation: every input row or file ends in exactly one place, the curated image list or the
exclusion log with a reason; flow counts record each step. included + excluded = total."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cxr.errors import DataError
from cxr.images import ImageRejected, load_image, resolve_inside
from cxr.listing import Entry, is_own, walk_root
from cxr.sources import load_source, own_files, rule_reasons

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


@dataclass(frozen=True, kw_only=True)
class Rules:
    """Selection rules from config (from_config); their defaults, the article's, are the
    schema's (rules/config.schema.yaml), so every field is given."""

    disease_finding: str
    views: tuple[str, ...]
    modality: str
    max_pixels: int
    min_side: int
    positive_label: str
    # Pixels with max(R,G,B) - min(R,G,B) at least this are coloured (annotation marks).
    chroma_threshold: int

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
    """One source's counts at each curation step, in order, for flow.json and the report's
    picture, and the exclusion rows of the records each step dropped."""

    steps: list[dict] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)

    def add(self, step: str, remaining: int, removed: dict[str, int]) -> None:
        self.steps.append({"step": step, "remaining": remaining, "removed": removed})

    def take(self, step: str, kept: Any, dropped: list[dict]) -> Any:
        """Count a step that kept `kept` and dropped `dropped` (exclusion rows); return `kept`."""
        self.excluded.extend(dropped)
        families = pd.Series([reason_family(row["reason"]) for row in dropped], dtype=object)
        self.add(step, len(kept), _count(families))
        return kept


def reason_family(reason: str) -> str:
    """Group detailed reasons ('view 'AP', not PA') into families for flow counts."""
    return reason.split(" ", 1)[0] if reason.startswith(("view", "finding", "modality")) else reason


def exclusion(row: dict, step: str, reason: str, detail: str = "") -> dict:
    """The exclusion log's row for a record dropped at `step` (EXCLUSION_COLUMNS)."""
    return {
        "record": row["record"],
        "source": row["source"],
        "file": row["file"],
        "patient": row["patient"],
        "label": row["label"],
        "step": step,
        "reason": reason,
        "detail": detail,
    }


def drop_known_to_adapter(records: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Step 1: what the adapter already knew (no metadata row, no patient key, ...)."""
    known = records["pre_exclusion"] != ""
    dropped = [
        exclusion(row, "source", row["pre_exclusion"], row["pre_detail"])
        for row in records[known].to_dict("records")
    ]
    return records[~known], dropped


def apply_rules(
    name: str, spec: dict, records: pd.DataFrame, rules: Rules
) -> tuple[pd.DataFrame, list[dict]]:
    """Step 2: the metadata rules (modality, finding, view), as the source's adapter reads them."""
    reasons = rule_reasons(name, spec, records, rules)
    failed = reasons != ""
    dropped = [
        exclusion(row, "rules", reason)
        for row, reason in zip(records[failed].to_dict("records"), reasons[failed], strict=True)
    ]
    return records[~failed], dropped


def decode_images(
    name: str, spec: dict, records: pd.DataFrame, rules: Rules
) -> tuple[list[dict], list[dict]]:
    """Step 3: the file must be inside the source's root and decode as a usable image; each
    kept record gains its image facts (`info`) and absolute `path`."""
    root = Path(spec["root"])
    real_root = Path(os.path.realpath(root))
    decoded, dropped = [], []
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
            dropped.append(exclusion(row, "image", exc.reason, detail))
            continue
        # The file decoded, under the root as configured: a link inside the root that a row
        # names is its target here, since every later reader refuses links (decode_image).
        decoded.append({**row, "info": info, "path": str(root / path.relative_to(real_root))})
        if i % 200 == 0:
            log.info("source %s: decoded %d/%d images", name, i, len(records))
    return decoded, dropped


def drop_duplicates(
    rows: list[dict], external: frozenset[str] = frozenset()
) -> tuple[list[dict], list[dict]]:
    """Step 4: exact duplicates by decoded pixels among the decoded images of all sources (`rows`
    in source order). Copies under one label: the first is kept, each other is a `duplicate
    image` naming it (and carries its id in `duplicate_of`, not a log column). Copies under two
    labels: no label can be trusted, so every copy is a `label conflict` naming the first copy
    of another label. An image of an `external` source with the pixels of a training source's
    image is `image already in training data`, whatever its label: a test on it would test
    recall, and it must not take the training copy out."""
    copies: dict[str, list[dict]] = {}
    for row in rows:
        copies.setdefault(row["info"].pixel_sha256, []).append(row)
    unique, dropped = [], []
    for row in rows:
        group = copies[row["info"].pixel_sha256]
        is_external = row["source"] in external
        trained = next((g for g in group if g["source"] not in external), None)
        if is_external and trained is not None:
            detail = f"same pixels as {_image_id(trained)}"
            if trained["label"] != row["label"]:
                detail += f", labelled {trained['label']!r} there"
            dropped.append(
                exclusion(row, "duplicates", "image already in training data", detail)
                | {"duplicate_of": _image_id(trained)}
            )
            continue
        group = [g for g in group if (g["source"] in external) == is_external]
        other = next((g for g in group if g["label"] != row["label"]), None)
        if other is not None:
            detail = f"same pixels as {_image_id(other)}, labelled {other['label']!r}"
            dropped.append(exclusion(row, "duplicates", "label conflict", detail))
        elif group[0] is not row:
            first = _image_id(group[0])
            detail = f"same pixels as {first}"
            dropped.append(
                exclusion(row, "duplicates", "duplicate image", detail) | {"duplicate_of": first}
            )
        else:
            unique.append(row)
    return unique, dropped


def drop_seen_patients(
    rows: list[dict], seen: dict[str, int], training: str
) -> tuple[list[dict], list[dict]]:
    """Step 6 of an external source that shares patient ids with a training source: the images
    of patients with images in the training data (`seen`: key -> its curated training images,
    whatever their split: train, val and test all come from there) are excluded, so the external
    set holds only patients the models never saw."""
    keep, dropped = [], []
    for row in rows:
        n = seen.get(row["patient"])
        if n is None:
            keep.append(row)
            continue
        detail = f"patient {row['patient']} has {n} image(s) in the training data ({training})"
        dropped.append(exclusion(row, "patients", "patient seen in training data", detail))
    return keep, dropped


def note_excluded_originals(excluded: list[dict]) -> None:
    """A duplicate names the image kept in its place; when sampling then left that image out, the
    duplicate's detail says so with the image's own reason, so the log never names an image as
    if it were in the data."""
    sampled_out = {_image_id(row): row for row in excluded if row["step"] == "sample"}
    for row in excluded:
        original = sampled_out.get(row.get("duplicate_of"))
        if original is not None:
            row["detail"] += (
                f", itself excluded: {original['reason']} ({original['detail']})"
                if original["detail"]
                else f", itself excluded: {original['reason']}"
            )


def sample_rows(rows: list[dict], sample: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Step 5: the article sampled a fixed number of images of some sources (seeded)."""
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(len(rows), size=sample, replace=False).tolist())
    detail = f"{sample} of {len(rows)}, seed {seed}"
    keep = [row for i, row in enumerate(rows) if i in chosen]
    dropped = [
        exclusion(row, "sample", "not sampled", detail)
        for i, row in enumerate(rows)
        if i not in chosen
    ]
    return keep, dropped


# A number inside an id, whole (not the digits after a point): its leading zeros and a '.0' are
# formatting ('01', '1.0' and '1' are one number).
_NUMBER = re.compile(r"(?<![\d.])(\d+)(?:\.0+)?(?![\d.])")


def patient_id_form(patient: str) -> str:
    """A patient id with its formatting taken out: Unicode form, case, surrounding blanks, and the
    leading zeros and '.0' of numbers ('01', '1.0' and '1' give '1'; '1.5' stays)."""
    text = unicodedata.normalize("NFKC", patient).strip().casefold()
    return _NUMBER.sub(lambda m: str(int(m.group(1))), text)


def ids_differing_only_in_format(patients: list[str]) -> list[list[str]]:
    """Groups of distinct patient ids that are one id written differently ('1', '1.0', '01'), in
    order of first appearance. Curation keeps them apart, as written: they may be one patient,
    whose images the split could then put on both sides."""
    forms: dict[str, set[str]] = {}
    for patient in patients:
        forms.setdefault(patient_id_form(patient), set()).add(patient)
    return [sorted(ids) for ids in forms.values() if len(ids) > 1]


def image_row(row: dict, spec: dict, rules: Rules) -> dict:
    """The curated image list's row of a kept record (IMAGE_COLUMNS)."""
    info = row["info"]
    return {
        "id": _image_id(row),
        "source": row["source"],
        "role": spec["role"],
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


def curate(
    sources: dict[str, dict], rules: Rules, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Apply rules, decode every candidate image, drop duplicates, sample; return
    (images, exclusions, flow) where len(images) + len(exclusions) == total inputs."""
    flows = {name: Flow() for name in sources}
    totals: dict[str, int] = {}
    walked: dict[str, list[Entry]] = {}
    loaded: dict[str, pd.DataFrame] = {}
    decoded: list[dict] = []
    for name, spec in sources.items():
        root = Path(spec["root"])
        # Walked here, apart from the adapter's listing, to check that nothing under the root
        # is lost or counted twice (the adapter raises first if the root is unusable).
        walked[name] = walk_root(root) if root.is_dir() else []
        records = loaded[name] = load_source(name, spec)
        totals[name] = len(records)
        log.info("source %s: %d input rows/files from %s", name, len(records), spec["root"])
        flow = flows[name]
        flow.add("input", len(records), {})
        records = flow.take("listed with patient key", *drop_known_to_adapter(records))
        records = flow.take("matches rules", *apply_rules(name, spec, records, rules))
        decoded += flow.take("decodes", *decode_images(name, spec, records, rules))
    # Duplicates among all sources at once: a label conflict removes the copies of every source.
    external = frozenset(n for n, spec in sources.items() if spec["role"] == "external")
    unique, duplicates = drop_duplicates(decoded, external)
    included: dict[str, list[dict]] = {}
    look_alike: dict[str, list[list[str]]] = {}
    # Training sources first: an external source's patients are checked against what they kept.
    for name in sorted(sources, key=lambda n: n in external):
        spec, flow = sources[name], flows[name]
        rows = flow.take(
            "unique pixels",
            [row for row in unique if row["source"] == name],
            [row for row in duplicates if row["source"] == name],
        )
        sample = spec.get("sample")
        if sample is not None and len(rows) > sample:
            rows = flow.take(f"sampled {sample}", *sample_rows(rows, sample, seed))
        if name in external and spec.get("same_patients_as"):
            rows = flow.take(
                "new patients", *external_patients(name, spec, rows, included, sources)
            )
        rows = [image_row(row, spec, rules) for row in rows]
        check_accounting(
            name, Path(spec["root"]), walked[name], own_files(name, spec), loaded[name],
            rows + flow.excluded,
        )  # fmt: skip
        included[name] = rows
        look_alike[name] = ids_differing_only_in_format([row["patient"] for row in rows])
        for ids in look_alike[name]:
            log.warning(
                "source %s: patient ids %s differ only in format; they are kept as %d patients, "
                "so if they are one patient the images can fall in different splits (a leak). "
                "Write the id one way in the source's metadata",
                name,
                ", ".join(map(repr, ids)),
                len(ids),
            )
        log.info("source %s: %d included, %d excluded", name, len(rows), len(flow.excluded))
    excluded = [row for flow in flows.values() for row in flow.excluded]
    note_excluded_originals(excluded)  # the kept copy may be of another source
    per_source = {
        name: {
            "total": totals[name],
            "included": len(included[name]),
            "excluded": len(flow.excluded),
            "patient_ids_differing_only_in_format": sum(map(len, look_alike[name])),
            "steps": flow.steps,
        }
        for name, flow in flows.items()
    }

    # In config's order of sources, whatever order they were finished in.
    images = pd.DataFrame(
        [row for name in sources for row in included[name]], columns=IMAGE_COLUMNS
    )
    exclusions = pd.DataFrame(excluded, columns=EXCLUSION_COLUMNS)
    total = sum(totals.values())
    if len(images) + len(exclusions) != total:  # an accounting bug must never pass silently
        raise AssertionError(f"accounting: {len(images)} + {len(exclusions)} != {total}")
    flow = {
        "sources": per_source,
        "total": total,
        "included": len(images),
        "excluded": len(exclusions),
        "excluded_by_reason": _count(exclusions["reason"]),
        "included_by_label": _count(images["label"]),
        "patient_ids_differing_only_in_format": sum(
            f["patient_ids_differing_only_in_format"] for f in per_source.values()
        ),
    }
    return images, exclusions, flow


def external_patients(
    name: str,
    spec: dict,
    rows: list[dict],
    included: dict[str, list[dict]],
    sources: dict[str, dict],
) -> tuple[list[dict], list[dict]]:
    """`drop_seen_patients` against every training source's curated images (the one named by
    `same_patients_as` shares the key prefix, so its patients are the ones that can match),
    logging how many patients matched."""
    seen = Counter(
        row["patient"]
        for source, kept in included.items()
        if sources[source]["role"] == "train"
        for row in kept
    )
    training = spec["same_patients_as"]
    keep, dropped = drop_seen_patients(rows, dict(seen), training)
    matched = {row["patient"] for row in dropped}
    # Ids are compared as written: one that equals a training id only once formatting is taken
    # out ('01' and '1') stays, but may be a patient the models saw, so the user is told.
    forms = {patient_id_form(patient): patient for patient in seen}
    look_alike = sorted(
        {
            f"{row['patient']!r} (training: {forms[patient_id_form(row['patient'])]!r})"
            for row in keep
            if patient_id_form(row["patient"]) in forms
        }
    )
    if look_alike:
        log.warning(
            "source %s: %d patient id(s) equal a training patient's id only once formatting is "
            "taken out: %s. They are kept as new patients (ids are compared as written); if they "
            "are the same patients, write the ids one way in the metadata",
            name, len(look_alike), ", ".join(look_alike),
        )  # fmt: skip
    log.info(
        "source %s: %d of %d patients also have images in the training data (source %s, ids "
        "compared as written, trimmed): their %d image(s) excluded; %d image(s) of %d new "
        "patient(s) remain",
        name, len(matched), len({row["patient"] for row in rows}), training, len(dropped),
        len(keep), len({row["patient"] for row in keep}),
    )  # fmt: skip
    return keep, dropped


def check_accounting(
    name: str,
    root: Path,
    entries: list[Entry],
    own: list[str],
    records: pd.DataFrame,
    rows: list[dict],
) -> None:
    """Fail, naming them, when an entry the walk of `root` found is in no output row (and is not
    the adapter's own file, the metadata), when an entry is listed twice or is listed but not
    under the root, or when an adapter's record is lost or doubled on the way. These are bugs,
    not bad data, and must never pass silently."""
    named = Counter(row["file"] for row in rows)
    listed = Counter(row["file"] for row in rows if row["record"] == row["file"])
    walked = {entry.path for entry in entries}
    out = Counter(row["record"] for row in rows)
    problems = {
        "in neither images.csv nor exclusions.csv": [
            e.path for e in entries if e.path not in named and not is_own(e.path, own)
        ],
        "counted twice": [f for f, n in listed.items() if n > 1 or named[f] > n],
        "listed but not found under the root": [f for f in listed if f not in walked],
        "records lost on the way": [r for r in records["record"] if r not in out],
        "records in more than one output row": [r for r, n in out.items() if n > 1],
    }
    found = [f"{what}: {_names(items)}" for what, items in problems.items() if items]
    if found:
        raise AssertionError(f"accounting of source {name!r} ({root}): " + "; ".join(found))


def _names(items: list[str], shown: int = 10) -> str:
    more = f" ... and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(repr(item) for item in items[:shown]) + more


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


def _image_id(row: dict) -> str:
    return f"{row['source']}/{row['file']}"
