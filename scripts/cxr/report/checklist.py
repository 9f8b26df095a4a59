"""Context of report/checklist.html.j2: the CLAIM checklist (Mongan, Moy & Kahn, Radiology:
Artificial Intelligence 2020;2(2):e200029) for this reproduction: each of its 42 items marked met,
not met or not applicable, with one sentence of why built from the facts of the run (claim_facts,
read from the rest of the report's context), the workflow's fixed ones (WORKFLOW_FACTS), and the
report section that addresses it."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import jinja2.meta
import pandas as pd

STATUSES = ("met", "not met", "not applicable")

# The page template whose includes are the report's sections, in order.
PAGE = "report.html.j2"
SECTION_ID = re.compile(r"""<section\s+id=["']([^"']+)["']""")


def section_anchors(template_dir: str | Path) -> list[str]:
    """The anchor ids of the report's sections, in page order: the `<section id=...>` of each
    template that report.html.j2 includes. A row's "section" is one of these or None."""
    template_dir = Path(template_dir)
    env = jinja2.Environment()
    page = env.parse((template_dir / PAGE).read_text(encoding="utf-8"))
    anchors = []
    for name in jinja2.meta.find_referenced_templates(page):
        if name is None or not name.endswith(".html.j2"):
            continue  # style.css; a name computed at render time is not a section
        ids = SECTION_ID.findall((template_dir / name).read_text(encoding="utf-8"))
        if len(ids) != 1:
            raise ValueError(
                f"{template_dir / name}: {len(ids)} <section id=...> tags; a template that "
                f"{PAGE} includes holds exactly one section"
            )
        anchors.append(ids[0])
    return anchors


# CLAIM 2020, items 1-42, as short topics (the checklist's own wording is longer).
ITEMS = (
    (1, "AI method identified in title and abstract"),
    (2, "Structured summary"),
    (3, "Scientific and clinical background, clinical role"),
    (4, "Study objectives and hypotheses"),
    (5, "Prospective or retrospective design"),
    (6, "Study goal"),
    (7, "Data sources"),
    (8, "Eligibility criteria"),
    (9, "Data preprocessing steps"),
    (10, "Selection of data subsets"),
    (11, "Definitions of data elements"),
    (12, "De-identification methods"),
    (13, "Handling of missing data"),
    (14, "Definition of the reference standard (ground truth)"),
    (15, "Rationale for the reference standard"),
    (16, "Source of annotations and annotators' qualifications"),
    (17, "Annotation tools"),
    (18, "Inter- and intrarater variability"),
    (19, "Intended sample size and how it was determined"),
    (20, "Assignment of data to partitions, proportions"),
    (21, "Level at which partitions are disjoint"),
    (22, "Detailed description of the model"),
    (23, "Software libraries, frameworks and packages"),
    (24, "Initialization of model parameters"),
    (25, "Details of the training approach"),
    (26, "Method of selecting the final model"),
    (27, "Ensembling techniques"),
    (28, "Metrics of model performance"),
    (29, "Statistical measures of significance and uncertainty"),
    (30, "Robustness or sensitivity analysis"),
    (31, "Explainability or interpretability methods"),
    (32, "Validation or testing on external data"),
    (33, "Flow of participants or cases (diagram)"),
    (34, "Demographic and clinical characteristics per partition"),
    (35, "Performance metrics on all data partitions"),
    (36, "Estimates of diagnostic accuracy and their precision"),
    (37, "Failure analysis of misclassified cases"),
    (38, "Study limitations"),
    (39, "Implications for practice"),
    (40, "Registration number and registry"),
    (41, "Access to the full study protocol"),
    (42, "Sources of funding and role of funders"),
)

FACT_KEYS = (
    "n_images",
    "n_patients",
    "sources",
    "exclusions_logged",
    "flow_diagram",
    "patient_disjoint",
    "protocols",
    "split_fractions",
    "architectures",
    "weights",
    "epochs",
    "batch_size",
    "learning_rate",
    "model_selection",
    "seeds",
    "metrics",
    "intervals",
    "external_sources",
    "external_has_both_classes",
    "external_both_class_sets",
    "learning_curve",
    "marks_checked",
    "n_marked",
    "leakage_audit",
    "failure_analysis",
    "saliency",
    "demographics",
    "reference_standard",
    "code_available",
    "config_recorded",
)

# What each protocol tests, as a phrase for the objectives (item 4).
PROTOCOL_PHRASES = {
    "article": "the article's image-level split",
    "patient": "patient-disjoint splits",
    "no_marks": "the removal of images with burnt-in marks",
    "learning_curve": "fewer training patients",
}

MET, NOT_MET, NA = STATUSES


def _join(items) -> str:
    return ", ".join(str(i) for i in items)


def _count(n: int, noun: str) -> str:
    """'1 seed', '2 seeds': a number with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check(facts: dict) -> None:
    """Fail early, naming the keys, rather than deep inside one item's sentence."""
    missing = [k for k in FACT_KEYS if k not in facts]
    if missing:
        raise ValueError(
            f"CLAIM facts lack the key(s) {missing}; build every key listed in "
            "cxr.report.checklist.FACT_KEYS (use False, [] or None where a step was not run)"
        )
    if facts["weights"] not in ("imagenet", "random"):
        raise ValueError(
            f"CLAIM facts: weights is {facts['weights']!r}, not 'imagenet' or 'random'"
        )
    if facts["model_selection"] not in ("final", "best"):
        raise ValueError(
            f"CLAIM facts: model_selection is {facts['model_selection']!r}, not 'final' or 'best'"
        )


def _included(f: dict) -> str:
    return f"{f['n_images']} images of {f['n_patients']} patients"


def _models_per_protocol(f: dict) -> int:
    return len(f["architectures"]) * len(f["seeds"])


def _title_and_introduction(f: dict) -> dict[int, tuple]:
    archs = _join(f["architectures"])
    method = (
        "transfer-learning convolutional networks"
        if f["weights"] == "imagenet"
        else "convolutional networks trained from random weights"
    )
    intervals = " with 95% intervals" if f["intervals"] else ""
    return {
        1: (MET, f"The report names the method: {method} ({archs}) on chest X-rays.", "summary"),
        2: (
            MET,
            f"The summary states the data ({_included(f)}), the design, headline metrics"
            f"{intervals} and the audit verdicts.",
            "summary",
        ),
        3: (
            NOT_MET,
            "The background given is the 2020 blog study being reproduced; no clinical role is "
            "proposed, because the models are objects of an audit, not tools for use.",
            "reproduction",
        ),
    }


def _objectives(f: dict) -> str:
    tests = [PROTOCOL_PHRASES.get(p, p) for p in f["protocols"] if p != "article"]
    if f["external_sources"]:
        tests.append("an external test set")
    if "article" in f["protocols"]:
        start = "The objective is to test whether the article's image-level result holds under "
    else:
        start = "The objective is to measure the article's models under "
    if not tests:
        return "The objective is to reproduce the article's image-level result."
    listed = tests[0] if len(tests) == 1 else f"{', '.join(tests[:-1])} and {tests[-1]}"
    return f"{start}{listed}."


def _methods_design_and_data(f: dict) -> dict[int, tuple]:
    sources = f["sources"]
    names = _join(s["name"] for s in sources)
    unlicensed = [s["name"] for s in sources if not s.get("licence") or not s.get("version")]
    if unlicensed:
        item7 = (
            NOT_MET,
            f"{len(sources)} sources are named but {_join(unlicensed)} lack a licence or version.",
            "data",
        )
    else:
        listed = "; ".join(
            f"{s['name']} ({s['label']}, {s['role']}, {s['licence']})" for s in sources
        )
        item7 = (MET, f"{len(sources)} sources, each with licence and version: {listed}.", "data")

    subsets = []
    if "no_marks" in f["protocols"]:
        subsets.append("images without burnt-in marks (no_marks protocol)")
    if f["learning_curve"]:
        subsets.append("nested subsets of training patients (learning curve)")
    if subsets:
        section = "marks" if "no_marks" in f["protocols"] else "learning-curve"
        item10 = (MET, f"Subsets are chosen by rule and reported: {'; '.join(subsets)}.", section)
    else:
        item10 = (
            NA,
            "No subset of the curated data is selected beyond the curation rules.",
            "data",
        )

    demo = f["demographics"]
    labels = _join(sorted({s["label"] for s in sources}))
    logged = f["exclusions_logged"]
    log_note = " and logged" if logged else ""
    return {
        4: (MET if f["protocols"] else NOT_MET, _objectives(f), "reproduction"),
        5: (
            MET,
            f"Retrospective: all {f['n_images']} images come from {len(sources)} public "
            f"collections ({names}) gathered before this study, so no prospective design is "
            "possible.",
            "data",
        ),
        6: (
            MET,
            f"The goal is to reproduce and audit a published model-creation study under "
            f"{len(f['protocols'])} protocols, not to build a model for use.",
            "reproduction",
        ),
        7: item7,
        8: (
            MET if logged else NOT_MET,
            f"Inclusion rules and a per-image exclusion log define the {_included(f)} included; "
            "where and when patients were imaged is known only as far as the sources record it."
            if logged
            else f"Inclusion rules define the {_included(f)} included, but the images excluded "
            "are not logged.",
            "data",
        ),
        9: (
            MET if f["config_recorded"] and f["code_available"] else NOT_MET,
            "Decoding, resizing and shard encoding follow the recorded configuration and the "
            "published code."
            if f["config_recorded"] and f["code_available"]
            else "Preprocessing is not fully documented: the configuration or the code that "
            "applies it is not available.",
            "reproducibility",
        ),
        10: item10,
        11: (
            NOT_MET,
            f"The outcome is a binary label ({labels}) taken from the sources and is not mapped to "
            "common data elements such as RadElement.",
            "data",
        ),
        12: (
            NA,
            f"The {len(sources)} sources published their images de-identified and this study adds "
            "no patient data, so it ran no de-identification of its own.",
            "data",
        ),
        13: (
            MET if logged else NOT_MET,
            f"Images that cannot be read or labelled are excluded{log_note}, "
            f"and age (known for {demo['age_known']} of {demo['n']}) and sex (known for "
            f"{demo['sex_known']} of {demo['n']}) are not imputed because no model uses them.",
            "data",
        ),
    }


def _ground_truth(f: dict) -> dict[int, tuple]:
    reference = str(f["reference_standard"]).strip().rstrip(".")
    return {
        14: (
            MET if reference else NOT_MET,
            f"The reference standard, taken as the sources give it, is {reference}."
            if reference
            else "No reference standard is stated.",
            "data",
        ),
        15: (
            NA,
            "No alternative reference standard (RT-PCR result, radiologist read) is recorded per "
            "image in the sources used, so there was no choice to justify.",
            "data",
        ),
        16: (
            NOT_MET,
            "Labels were assigned by the sources' contributors, whose qualifications the report "
            "does not document; this study made no annotations of its own.",
            "data",
        ),
        17: (
            NA,
            "No annotations were made: the only labels are image-level source labels, so no "
            "annotation tool was used.",
            None,
        ),
        18: (
            NA,
            "No annotator worked for this study and each image carries one source label, so there "
            "is no inter- or intrarater variability to measure.",
            None,
        ),
    }


def _partitions(f: dict) -> dict[int, tuple]:
    fractions = _join(f"{k} {v:.0%}" for k, v in f["split_fractions"].items())
    article = (
        "; the article protocol splits images at random instead"
        if "article" in f["protocols"]
        else ""
    )
    curve = (
        "; the learning curve shows how the metric moves with the number of training patients"
        if f["learning_curve"]
        else ""
    )
    if f["patient_disjoint"]:
        comparison = (
            ", and the article's image-level split is kept only for comparison" if article else ""
        )
        item21 = (
            MET,
            "Partitions are disjoint at patient level: no patient has images in more than one "
            f"split of the patient protocol{comparison}.",
            "caveats",
        )
    else:
        item21 = (
            NOT_MET,
            "The patient protocol's splits share patients, so partitions are disjoint only at "
            "image level.",
            "caveats",
        )
    return {
        19: (
            NOT_MET,
            f"The sample size ({_included(f)}) was fixed by the article and the public data, "
            f"not by a power calculation{curve}.",
            "learning-curve" if f["learning_curve"] else "caveats",
        ),
        20: (
            MET if f["split_fractions"] else NOT_MET,
            f"Patients are assigned at random, stratified by class, to {fractions}{article}.",
            "data",
        ),
        21: item21,
    }


def _model_and_training(f: dict) -> dict[int, tuple]:
    archs = f["architectures"]
    seeds = f"seed{'s' if len(f['seeds']) != 1 else ''} {_join(f['seeds'])}"
    n_models = _models_per_protocol(f)
    if f["weights"] == "imagenet":
        init = (
            "Backbones start from ImageNet-pretrained weights (transfer learning) and the new head "
            f"from random weights with {seeds}."
        )
    else:
        init = (
            f"All layers start from random weights with {seeds}, unlike the article's "
            "ImageNet transfer learning."
        )
    if f["model_selection"] == "final":
        selection = (
            f"The weights after the last of {f['epochs']} epochs are used, so neither validation "
            "nor test results choose the model."
        )
    else:
        selection = (
            f"The checkpoint with the best validation score over {f['epochs']} epochs is used; the "
            "test split plays no part in the choice."
        )
    return {
        22: (
            MET if archs else NOT_MET,
            f"The {len(archs)} architectures ({_join(archs)}), their input and the article's "
            "classification head are described.",
            "training",
        ),
        23: (
            MET if f["config_recorded"] else NOT_MET,
            "Package versions, the git commit and the configuration are recorded with the report."
            if f["config_recorded"]
            else "Package versions are listed but the configuration is not recorded.",
            "reproducibility",
        ),
        24: (MET, init, "training"),
        25: (
            MET,
            f"Training runs {f['epochs']} epochs at batch size {f['batch_size']} and learning rate "
            f"{f['learning_rate']:g}, giving {_count(n_models, 'model')} per protocol "
            f"({_count(len(archs), 'architecture')} × {_count(len(f['seeds']), 'seed')}).",
            "training",
        ),
        26: (MET, selection, "training"),
        27: (
            NA,
            f"No ensembling: each of the {_count(n_models, 'model')} per protocol is evaluated "
            "alone.",
            "results",
        ),
    }


def _evaluation(f: dict) -> dict[int, tuple]:
    metrics = f["metrics"]
    checks = []
    if len(f["seeds"]) > 1:
        checks.append(f"{len(f['seeds'])} seeds per architecture")
    if f["marks_checked"] and "no_marks" in f["protocols"]:
        marked = f"the {f['n_marked']} images" if f["n_marked"] is not None else "images"
        checks.append(f"retraining without {marked} with burnt-in marks")
    elif f["marks_checked"]:
        checks.append("a count of images with burnt-in marks")
    if f["learning_curve"]:
        checks.append("a learning curve over the number of training patients")
    if f["leakage_audit"]:
        checks.append("leakage probes (patient overlap, trivial features, image borders)")
    if checks:
        where = (
            ("caveats", f["leakage_audit"]),
            ("marks", f["marks_checked"]),
            ("learning-curve", f["learning_curve"]),
        )
        section = next((name for name, shown in where if shown), "results")
        item30 = (MET, f"Robustness checks: {'; '.join(checks)}.", section)
    else:
        item30 = (
            NOT_MET,
            "No robustness check is run: one seed per architecture, and no probe, marks check or "
            "learning curve.",
            None,
        )

    if f["saliency"]:
        checks = []
        if f.get("lung_annotations"):
            checks.append(
                "on the collection's expert lung annotations, the share of attribution inside "
                "the lungs and the pointing game against the lungs' area"
            )
        if f.get("randomisation_check"):
            checks.append("a model randomisation sanity check (Adebayo et al. 2018)")
        item31 = (
            MET,
            "Grad-CAM and occlusion maps of every test image and of each external source's "
            "(all, or a fixed sample per class: saliency.external_per_source), with the share of "
            "attribution inside and outside the lungs against the share of area; the methods "
            "are checked on the synthetic data against the planted opacities and markers "
            "(pointing game, positive and negative controls)"
            + (f"; {'; '.join(checks)}." if checks else "."),
            "saliency",
        )
    else:
        item31 = (
            NOT_MET,
            "No saliency or other explanation method is applied; the border-only probe tests one "
            "shortcut but explains no single prediction.",
            None,
        )

    external = f["external_sources"]
    if external:
        both = f["external_both_class_sets"]
        classes = (
            f"which hold both classes ({_join(both)}), so accuracy, sensitivity, specificity "
            "and ROC AUC are measured outside the training sources too"
            if f["external_has_both_classes"]
            else "which hold one class only, so they measure error rates on that class but not "
            "accuracy or ROC AUC"
        )
        item32 = (
            MET,
            f"The models are also tested on {_count(len(external), 'external source')} never "
            f"used in training ({_join(external)}), {classes}.",
            "generalisation" if f["external_has_both_classes"] else "reproduction",
        )
    else:
        item32 = (
            NOT_MET,
            "No external test set is used: every test image comes from the training sources.",
            None,
        )

    if f["intervals"]:
        item29 = (
            MET,
            "Proportions carry 95% Wilson intervals, and accuracy and ROC AUC a 95% patient-level "
            f"bootstrap interval, for each of the {_models_per_protocol(f)} models.",
            "results",
        )
    else:
        item29 = (NOT_MET, "Metrics are reported as point estimates without intervals.", "results")

    return {
        28: (
            MET if metrics else NOT_MET,
            f"The report gives {len(metrics)} metrics: {_join(metrics)}."
            if metrics
            else "No performance metric is reported.",
            "results",
        ),
        29: item29,
        30: item30,
        31: item31,
        32: item32,
    }


def _results(f: dict) -> dict[int, tuple]:
    demo = f["demographics"]
    n = demo["n"]
    complete = demo["age_known"] >= n and demo["sex_known"] >= n
    accuracy_measures = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "roc auc")
    diagnostic = [m for m in f["metrics"] if m.lower() in accuracy_measures]
    external = " and on the external set" if f["external_sources"] else ""
    return {
        33: (
            MET if f["flow_diagram"] and f["exclusions_logged"] else NOT_MET,
            f"A curation flow diagram leads from {len(f['sources'])} sources to {_included(f)}, "
            "with every exclusion logged with its reason."
            if f["flow_diagram"] and f["exclusions_logged"]
            else f"The {_included(f)} are counted but no flow diagram with logged exclusions is "
            "drawn.",
            "data",
        ),
        34: (
            MET if complete else NOT_MET,
            f"Age and sex are known for all {n} and are shown by partition."
            if complete
            else f"Partitions are described by class, source, images and patients, but age is "
            f"known for {demo['age_known']} of {n} and sex for {demo['sex_known']} of {n}, so "
            "demographic balance cannot be shown.",
            "data",
        ),
        35: (
            MET if f["metrics"] else NOT_MET,
            f"Metrics are given for each of the {_count(len(f['architectures']), 'architecture')} "
            f"and {_count(len(f['seeds']), 'seed')} on the test split{external}, with training "
            "and validation histories in the training section.",
            "results",
        ),
        36: (
            MET if f["intervals"] and diagnostic else NOT_MET,
            f"The estimates of {_join(diagnostic)} carry 95% intervals (Wilson for proportions, "
            "patient bootstrap for accuracy and ROC AUC)."
            if f["intervals"] and diagnostic
            else "Diagnostic accuracy is given without intervals.",
            "results",
        ),
        37: (
            MET if f["failure_analysis"] else NOT_MET,
            "Misclassified test images are listed and shown with their source and predicted "
            "probability."
            if f["failure_analysis"]
            else "Misclassified images are not listed or examined.",
            "results" if f["failure_analysis"] else None,
        ),
    }


def _discussion_and_other(f: dict) -> dict[int, tuple]:
    measured = [f"how little data there is ({_included(f)})"]
    if f["leakage_audit"]:
        measured.append("what leakage and shortcut probes find")
    measured.append(
        f"how the models fare on {_count(len(f['external_sources']), 'external source')}"
        if f["external_sources"]
        else "that no external test set was available"
    )
    return {
        38: (
            MET,
            "The caveats measure the limitations rather than only list them: "
            f"{'; '.join(measured)}.",
            "caveats",
        ),
        39: (
            NA,
            "No clinical use is intended or claimed; the conclusions concern how the article "
            "evaluated its models, not practice.",
            None,
        ),
        40: (
            NA,
            "This retrospective reproduction on public data is registered in no registry; "
            "registration serves prospective studies, which this is not.",
            None,
        ),
        41: (
            MET if f["code_available"] and f["config_recorded"] else NOT_MET,
            "No separate protocol document exists; the workflow code, its configuration and the "
            "commands to rerun it stand in for one."
            if f["code_available"] and f["config_recorded"]
            else "Neither a protocol document nor the complete code and configuration are "
            "available.",
            "reproducibility",
        ),
        42: (
            NOT_MET,
            "The report makes no funding statement; whoever publishes it should add one.",
            None,
        ),
    }


def claim_checklist(facts: dict) -> list[dict]:
    """One row per CLAIM item, in item order: item, topic, status, why (one sentence), section."""
    _check(facts)
    assessed: dict[int, tuple] = {}
    for part in (
        _title_and_introduction,
        _methods_design_and_data,
        _ground_truth,
        _partitions,
        _model_and_training,
        _evaluation,
        _results,
        _discussion_and_other,
    ):
        assessed.update(part(facts))
    rows = []
    for item, topic in ITEMS:
        status, why, section = assessed[item]
        rows.append(
            {"item": item, "topic": topic, "status": status, "why": why, "section": section}
        )
    return rows


def summary(rows: list[dict]) -> dict[str, int]:
    """How many rows have each status; every status is present, with 0 where none has it."""
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        if row["status"] not in counts:
            raise ValueError(
                f"CLAIM item {row['item']}: status {row['status']!r} is not one of {STATUSES}"
            )
        counts[row["status"]] += 1
    return counts


def checklist(facts: dict) -> dict:
    """The context of report/checklist.html.j2: {"rows": [...], "summary": {...}}."""
    rows = claim_checklist(facts)
    return {"rows": rows, "summary": summary(rows)}


# The facts that are properties of the workflow, not of a run: every run has them, so no input
# of the report could say otherwise. claim_facts takes them as a parameter, so that what the
# checklist says of a workflow without one of them is a call away (tests/test_report.py).
WORKFLOW_FACTS = {
    # curate_images logs every record it drops, with its reason, in exclusions.csv, an input
    # of the report (the data section's exclusion table).
    "exclusions_logged": True,
    # The metrics of cxr.metrics.binary_metrics that results.metric_table shows per run.
    "metrics": [
        "accuracy",
        "sensitivity",
        "specificity",
        "PPV",
        "NPV",
        "ROC AUC",
        "F1",
        "Brier",
        "ECE",
    ],
    # curate_images measures every image's colour marks, and the report counts the marked
    # images (the marks section) whether or not a no_marks protocol runs.
    "marks_checked": True,
    # audit_leakage runs for every dataset; its leakage.json is an input of the report.
    "leakage_audit": True,
    # The workflow is its code: the report comes from a checkout or a release archive of it.
    "code_available": True,
    # Labels come from the sources as curation reads them, never from annotators of our own.
    "reference_standard": "source labels: the COVID-19 collection's `finding` column "
    "(curation.disease_finding); healthy sources by folder",
}


def _known(frame: pd.DataFrame, column: str) -> int:
    """Rows of `frame` with a non-empty `column` (0 when the curated table has no such column)."""
    return int((frame[column].astype(str) != "").sum()) if column in frame else 0


def _intervals(runs: list[dict]) -> bool:
    """Whether every run's test accuracy carries its Wilson and patient-bootstrap intervals."""
    return bool(runs) and all(
        {"ci95", "ci95_patient_bootstrap"} <= r["test"]["accuracy"].keys() for r in runs
    )


def claim_facts(
    context: dict,
    config: dict,
    protocols: list[dict],
    images: pd.DataFrame,
    *,
    workflow: dict = WORKFLOW_FACTS,
) -> dict:
    """The facts claim_checklist reads: those of the run, from the report's context and
    config, and the workflow's own (`workflow`, WORKFLOW_FACTS)."""
    training = config["training"]
    trained = images[images["role"] == "train"]
    disease = trained[trained["label"] == context["labels"]["positive"]]
    runs = context["runs"]
    return {
        **workflow,
        "n_images": len(trained),
        "n_patients": int(trained["patient"].nunique()),
        "sources": [
            {
                "name": s["name"],
                "label": s["label"],
                "role": s["role"],
                "licence": s.get("license") or "",
                "version": s.get("version") or "",
            }
            for s in context["sources"]
        ],  # fmt: skip
        "flow_diagram": bool(context["flow"]["picture"]),
        "patient_disjoint": (context["leakage"]["overlap"] or {}).get(
            "patients_in_several_splits", 0
        )
        == 0,
        "protocols": [p["name"] for p in protocols],
        "split_fractions": context["split_fractions"],
        "architectures": list(dict.fromkeys(r["arch"] for r in runs)),
        "weights": "random" if context["weights"]["random"] else "imagenet",
        "epochs": int(training["epochs"]),
        "batch_size": int(training["batch_size"]),
        "learning_rate": float(training["learning_rate"]),
        "model_selection": config["evaluation"]["checkpoint"],
        "seeds": sorted({r["seed"] for r in runs}),
        "intervals": _intervals(runs),
        "external_sources": sorted(
            {s for r in runs for s, e in r["external"].items() if e.get("kind") == "source"}
        ),
        "external_has_both_classes": any(
            e.get("classes") == "both" for r in runs for e in r["external"].values()
        ),
        "external_both_class_sets": sorted(
            {n for r in runs for n, e in r["external"].items() if e.get("classes") == "both"}
        ),
        "learning_curve": bool(context.get("learning_curves")),
        "n_marked": context["marks"]["n_marked"],
        "failure_analysis": any(r.get("errors") for r in runs),
        "saliency": bool(context["saliency"]["runs"]),
        "lung_annotations": any(section["images"] for section in context.get("lungs", [])),
        "randomisation_check": any(
            (section.get("randomisation_sample") or {}).get("images")
            for section in context.get("lungs", [])
        ),
        "demographics": {
            "age_known": _known(disease, "age"),
            "sex_known": _known(disease, "sex"),
            "n": len(trained),
        },
        # The reproducibility section prints the configuration the run used.
        "config_recorded": bool(context["reproducibility"]["config_yaml"]),
    }


def context(
    report: dict,
    *,
    config: dict,
    protocols: list[dict],
    images: pd.DataFrame,
    workflow: dict = WORKFLOW_FACTS,
) -> dict:
    """The key checklist.html.j2 shows, from the facts in the other sections' context."""
    facts = claim_facts(report, config, protocols, images, workflow=workflow)
    return {"checklist": checklist(facts)}
