"""The CLAIM checklist appendix: 42 items in order, statuses that follow the facts, reasons that
state the facts' numbers, and a template that renders them escaped."""

from __future__ import annotations

import copy
import re

import pytest

from conftest import REPO
from cxr.report import checklist as claim
from cxr.report import environment as report_environment

FACTS = {
    "n_images": 138,
    "n_patients": 101,
    "sources": [
        {
            "name": "covid-chestxray-dataset",
            "label": "covid",
            "role": "train",
            "licence": "per image (CC BY, CC BY-NC-SA, ...)",
            "version": "2020-03",
        },
        {
            "name": "kermany",
            "label": "normal",
            "role": "train",
            "licence": "CC BY 4.0",
            "version": "v3",
        },
    ],
    "exclusions_logged": True,
    "flow_diagram": True,
    "patient_disjoint": True,
    "protocols": ["article", "patient", "no_marks", "learning_curve"],
    "split_fractions": {"train": 0.7, "val": 0.1, "test": 0.2},
    "architectures": ["MobileNet", "DenseNet121", "ResNet50"],
    "weights": "imagenet",
    "epochs": 25,
    "batch_size": 8,
    "learning_rate": 0.001,
    "model_selection": "final",
    "seeds": [0, 1],
    "metrics": claim.WORKFLOW_FACTS["metrics"],  # the workflow's own list (item 28 counts 9)
    "intervals": True,
    "external_sources": [],
    "external_has_both_classes": False,
    "external_both_class_sets": [],
    "learning_curve": True,
    "marks_checked": True,
    "n_marked": 17,
    "leakage_audit": True,
    "failure_analysis": True,
    "saliency": False,
    "demographics": {"age_known": 61, "sex_known": 64, "n": 138},
    "reference_standard": "source labels: the collection's `finding` column; Kermany folder NORMAL",
    "code_available": True,
    "config_recorded": True,
}
ALERT = "<script>alert(1)</script>"


def facts(**changes) -> dict:
    out = copy.deepcopy(FACTS)
    out.update(changes)
    return out


def row(rows: list[dict], item: int) -> dict:
    return next(r for r in rows if r["item"] == item)


def render(context: dict) -> str:
    env = report_environment(REPO / "report")
    return env.get_template("checklist.html.j2").render(checklist=context)


# The facts of a weaker run: every branch that FACTS does not take.
SPARSE = dict(
    n_marked=None,
    marks_checked=False,
    protocols=["article", "patient"],
    learning_curve=False,
    leakage_audit=False,
    seeds=[0],
    weights="random",
    model_selection="best",
    intervals=False,
    external_sources=["nih-cxr14"],
    saliency=True,
    exclusions_logged=False,
    flow_diagram=False,
    config_recorded=False,
    code_available=False,
    failure_analysis=False,
    patient_disjoint=False,
)


# The facts of a run with an external set of both classes: item 32 links to Generalisation.
EXTERNAL = dict(
    external_sources=["later", "nih-cxr14"],
    external_has_both_classes=True,
    external_both_class_sets=["temporal"],
    saliency=True,
)
# The report's section anchors, as the templates have them (report.html.j2's includes).
ANCHORS = claim.section_anchors(REPO / "report")


@pytest.mark.parametrize("changes", [{}, SPARSE, EXTERNAL], ids=["full", "sparse", "external"])
def test_42_items_in_order_with_known_statuses_and_sections(changes):
    rows = claim.claim_checklist(facts(**changes))
    assert [r["item"] for r in rows] == list(range(1, 43))
    assert len({r["item"] for r in rows}) == 42
    for r in rows:
        assert set(r) == {"item", "topic", "status", "why", "section"}
        assert r["status"] in claim.STATUSES, r
        assert r["section"] is None or r["section"] in ANCHORS, r
        assert r["topic"] and r["why"].endswith("."), r
        assert ". " not in r["why"], f"item {r['item']}: more than one sentence: {r['why']}"


def test_section_anchors_are_read_from_the_included_templates(tmp_path):
    (tmp_path / "report.html.j2").write_text(
        '<style>{% include "style.css" %}</style>\n'
        '{% include "first.html.j2" %}\n{%- include "second.html.j2" -%}\n'
    )
    (tmp_path / "style.css").write_text("p {}")
    (tmp_path / "first.html.j2").write_text('<section id="one"><h2>One</h2>\n<h3 id="x">')
    (tmp_path / "second.html.j2").write_text("{# two #}\n<section id='two-b'>")
    (tmp_path / "unused.html.j2").write_text('<section id="unused">')
    assert claim.section_anchors(tmp_path) == ["one", "two-b"]  # not unused.html.j2's
    (tmp_path / "second.html.j2").write_text("<p>no section</p>")
    with pytest.raises(ValueError, match=r"second\.html\.j2: 0 <section"):
        claim.section_anchors(tmp_path)


def test_explainability_is_met_only_with_saliency():
    assert row(claim.claim_checklist(FACTS), 31)["status"] == "not met"
    assert row(claim.claim_checklist(facts(saliency=True)), 31)["status"] == "met"


def test_external_validation_needs_an_external_source_and_says_which_classes():
    none = row(claim.claim_checklist(FACTS), 32)
    assert none["status"] == "not met"
    assert none["section"] is None

    one_class = row(claim.claim_checklist(facts(external_sources=["nih-cxr14"])), 32)
    assert one_class["status"] == "met"
    assert "nih-cxr14" in one_class["why"] and "one class only" in one_class["why"]

    both = facts(external_sources=["later", "nih-cxr14"], external_has_both_classes=True,
                 external_both_class_sets=["temporal"])  # fmt: skip
    both_row = row(claim.claim_checklist(both), 32)
    assert "which hold both classes (temporal)" in both_row["why"]
    assert both_row["section"] == "generalisation"


def test_reasons_state_the_numbers_they_are_given():
    rows = claim.claim_checklist(FACTS)
    assert "138 images of 101 patients" in row(rows, 33)["why"]
    assert "138 images of 101 patients" in row(rows, 19)["why"]
    assert "61 of 138" in row(rows, 34)["why"] and "64 of 138" in row(rows, 34)["why"]
    assert "train 70%, val 10%, test 20%" in row(rows, 20)["why"]
    training = row(rows, 25)["why"]
    assert "25 epochs" in training and "batch size 8" in training and "0.001" in training
    assert "6 models" in training  # 3 architectures x 2 seeds
    assert "17 images" in row(rows, 30)["why"]
    assert "9 metrics" in row(rows, 28)["why"]
    assert "Kermany folder NORMAL" in row(rows, 14)["why"]


def test_statuses_follow_the_facts():
    rows = claim.claim_checklist(FACTS)
    assert row(rows, 21)["status"] == "met"
    assert row(rows, 34)["status"] == "not met"  # age and sex known for some only
    assert row(rows, 40)["status"] == "not applicable"

    worse = claim.claim_checklist(
        facts(
            patient_disjoint=False,
            intervals=False,
            failure_analysis=False,
            flow_diagram=False,
            demographics={"age_known": 138, "sex_known": 138, "n": 138},
        )
    )
    for item in (21, 29, 33, 36, 37):
        assert row(worse, item)["status"] == "not met", item
    assert row(worse, 34)["status"] == "met"

    sparse = claim.claim_checklist(facts(**SPARSE))
    assert "random weights with seed 0," in row(sparse, 24)["why"]
    assert "best validation" in row(sparse, 26)["why"]
    assert "(3 architectures × 1 seed)" in row(sparse, 25)["why"]
    assert "1 external source never" in row(sparse, 32)["why"]
    for item in (8, 9, 10, 23, 29, 30, 41):
        assert row(sparse, item)["status"] != "met", item


def test_summary_counts_every_status_and_adds_to_42():
    rows = claim.claim_checklist(FACTS)
    counts = claim.summary(rows)
    assert set(counts) == set(claim.STATUSES)
    assert sum(counts.values()) == 42
    assert counts["met"] == sum(r["status"] == "met" for r in rows)
    with pytest.raises(ValueError, match="item 1"):
        claim.summary([{**rows[0], "status": "partly"}])


def test_missing_fact_is_named():
    broken = facts()
    del broken["saliency"]
    with pytest.raises(ValueError, match="saliency"):
        claim.claim_checklist(broken)


def test_template_renders_42_rows_escaped():
    context = claim.checklist(FACTS)
    context["rows"][0]["why"] = f"Injected {ALERT}."
    html = render(context)
    assert 'id="checklist"' in html
    assert "Appendix: CLAIM checklist" in html
    assert "Mongan" in html
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert len(re.findall(r"<tr>", body)) == 42
    assert ALERT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    counts = context["summary"]
    assert f"meets <strong>{counts['met']}</strong>" in html
    assert '<a href="#data">data</a>' in html
    assert '<span class="badge badge-pass">met</span>' in html
    assert '<span class="badge badge-flag">not met</span>' in html
    assert '<span class="badge">not applicable</span>' in html
    # Self-contained: nothing that loads or runs.
    assert "<script" not in html and "src=" not in html and "http" not in html
