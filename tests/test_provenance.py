"""Job records, results/provenance.json, and the provenance line of the report's figures and
tables (cxr.provenance, cxr.report.provenance)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

from cxr import provenance
from cxr.io import read_json
from cxr.report.provenance import ProvenanceNotes

REPO = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _job(tmp_path, rule, inputs, outputs, wildcards=None, params=None) -> Path:
    for out in outputs:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(f"made by {rule} {out}")
    settings = dict(params or {})
    sm = SimpleNamespace(
        rule=rule, wildcards=dict(wildcards or {}), input=[str(p) for p in inputs],
        output=[str(p) for p in outputs], params=SimpleNamespace(items=settings.items),
    )  # fmt: skip
    return provenance.record_job(sm, REPO / "scripts" / f"{rule}.py", jobs_dir=tmp_path / "jobs")


def test_a_job_record_names_rule_script_commit_and_the_bytes(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.png").write_bytes(b"12345")
    (raw / "sub").mkdir()
    (raw / "sub" / "b.png").write_bytes(b"1")
    table = tmp_path / "table.csv"
    table.write_text("id\n1\n")
    out = tmp_path / "out" / "x.json"
    path = _job(
        tmp_path, "evaluate_models", [raw, table], [out],
        wildcards={"protocol": "patient", "arch": "MobileNet"}, params={"threshold": 0.5},
    )  # fmt: skip
    assert path == tmp_path / "jobs/evaluate_models/arch=MobileNet,protocol=patient.json"
    record = read_json(path)
    assert record["job"] == "evaluate_models[arch=MobileNet,protocol=patient]"
    assert record["script"] == "scripts/evaluate_models.py"
    assert record["params"] == {"threshold": 0.5}
    folder, file = record["inputs"]
    assert folder["kind"] == "folder" and folder["files"] == 2
    # Snakemake's marker in a directory() output, written after the job, changes nothing.
    (raw / ".snakemake_timestamp").write_text("")
    assert provenance.fingerprint(raw) == folder
    assert file == {"path": str(table), "kind": "file", "bytes": 5, "sha256": _sha(table)}
    assert record["outputs"][0]["sha256"] == _sha(out)
    # This checkout's commit (the test runs inside the repository's git checkout, or an
    # unpacked release, where the archived commit stands in).
    assert record["commit"] is None or re.fullmatch("[0-9a-f]{40}", record["commit"])


def test_git_commit_says_when_the_tree_differs(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = provenance.git_commit(tmp_path)
    assert re.fullmatch("[0-9a-f]{40}", clean["commit"]) and clean["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert provenance.git_commit(tmp_path) == {"commit": clean["commit"], "dirty": True}
    assert provenance.commit_text({"commit": "abc", "dirty": True}) == "abc + uncommitted changes"


def test_an_archive_without_git_names_the_commit_git_archive_wrote(tmp_path, monkeypatch):
    archived = tmp_path / "COMMIT"
    monkeypatch.setattr(provenance, "ARCHIVED_COMMIT", archived)
    archived.write_text("$Format:%H$\n")  # the file as committed: not substituted
    assert provenance.git_commit(tmp_path) == {"commit": None, "dirty": None}
    archived.write_text("a" * 40 + "\n")
    assert provenance.git_commit(tmp_path) == {"commit": "a" * 40, "dirty": None}
    assert (REPO / ".gitattributes").read_text().count("scripts/cxr/COMMIT export-subst") == 1


def test_collect_follows_inputs_upstream_and_drops_records_whose_bytes_changed(tmp_path):
    source = tmp_path / "source.csv"
    source.write_text("raw")
    curated = tmp_path / "results/curated.csv"
    model = tmp_path / "results/model.json"
    figure = tmp_path / "results/figure.png"
    _job(tmp_path, "curate", [source], [curated])
    _job(tmp_path, "train", [curated], [model], wildcards={"arch": "A"})
    _job(tmp_path, "plot", [model, curated], [figure])
    found = provenance.collect([str(figure)], jobs_dir=tmp_path / "jobs")
    assert found["artifacts"] == {str(figure): "plot"}
    assert list(found["jobs"]) == ["curate", "plot", "train[arch=A]"]
    assert found["stale"] == []

    model.write_text("edited by hand")
    found = provenance.collect([str(figure), str(model)], jobs_dir=tmp_path / "jobs")
    assert found["artifacts"] == {str(figure): "plot", str(model): None}
    assert found["stale"] == ["train[arch=A]"]
    assert "train[arch=A]" not in found["jobs"]


def test_the_note_names_the_job_and_short_hashes(tmp_path):
    table = tmp_path / "in.csv"
    table.write_text("x")
    out = tmp_path / "results/a/MobileNet/seed0.json"
    other = tmp_path / "results/a/ResNet50/seed0.json"
    _job(tmp_path, "evaluate_models", [table], [out, other], params={"threshold": 0.5})
    found = provenance.collect([str(out), str(other)], jobs_dir=tmp_path / "jobs")
    notes = ProvenanceNotes(found, {"evaluations": [str(out), str(other)]})
    html = str(notes("evaluations", like="MobileNet/"))
    assert html.startswith('<details class="prov"><summary>provenance</summary>')
    assert "MobileNet" in html and "ResNet50" not in html
    assert "job <code>evaluate_models</code>" in html
    assert "script <code>scripts/evaluate_models.py</code>" in html
    assert _sha(out)[:12] in html and _sha(table)[:12] in html
    assert "<code>threshold</code>=0.5" in html
    assert "Drawn by rule" in str(notes("evaluations", drawn=True))
    assert "from this run&#39;s settings" in str(notes()) or "settings and software" in str(notes())
    assert "provenance not recorded" in str(ProvenanceNotes(None, {"x": "a/b"})("x"))
    assert "no job record" in str(ProvenanceNotes(found, {})("results/elsewhere.json"))


def test_every_name_the_templates_pass_to_prov_is_an_input_of_the_report():
    rules = (REPO / "rules/report.smk").read_text()
    block = rules[rules.index("REPORT_ARTIFACTS = dict(") : rules.index("\n)\n")]
    names = set(re.findall(r"^    (\w+)=", block, flags=re.M))
    assert {"evaluations", "figures", "audit", "severity"} <= names
    used = set()
    for template in (REPO / "report").glob("*.j2"):
        for call in re.findall(r"prov\(([^)]*)\)", template.read_text()):
            used |= set(re.findall(r'(?<![=~] )"(\w+)"', call))
    assert used, "no prov() call found in the templates"
    assert used <= names, sorted(used - names)
