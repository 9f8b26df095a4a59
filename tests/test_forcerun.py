"""scripts/forcerun.py: the rules to force after editing a module of scripts/cxr, derived from
the rules' `script:` entry points and the package's imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import forcerun
import pytest

from conftest import REPO

COMMAND = [sys.executable, str(REPO / "scripts" / "forcerun.py")]


@pytest.fixture(scope="module")
def table() -> dict[str, list[str]]:
    return forcerun.forcerun_table(REPO)[0]


def test_a_module_maps_to_the_rules_whose_script_imports_it(table):
    assert "evaluate_models" in table["cxr.metrics"]
    assert table["cxr.annotations"] == ["curate_annotations"]
    assert table["cxr.curate"] == ["curate_images"]
    assert table["cxr.report.marks"] == ["render_report"]


def test_a_module_named_as_a_string_and_its_imports_are_followed(table):
    # train_models runs run_tensorflow_job(..., module="heads"); heads imports fitting.
    assert "train_models" in table["cxr.heads"]
    assert "train_models" in table["cxr.fitting"]
    # explain_model names no module: run_tensorflow_job's default, cxr.jobs.
    assert "explain_model" in table["cxr.jobs"]


def test_every_module_of_the_package_is_in_the_table(table):
    files = (REPO / "scripts" / "cxr").rglob("*.py")
    names = {
        ".".join(p.relative_to(REPO / "scripts").with_suffix("").parts).removesuffix(".__init__")
        for p in files
    }
    assert names == set(table)
    assert {"cxr.fitting", "cxr.generalisation", "cxr.listing", "cxr.download"} <= names


def test_a_module_only_the_workflow_reads_needs_no_rule():
    users, workflow = forcerun.forcerun_table(REPO)
    assert users["cxr.config"] == []  # rules/common.smk checks the config with it
    assert "cxr.config" in workflow
    assert "cxr.annotations" not in workflow


def test_the_command_prints_the_rules_on_one_line_in_workflow_order():
    out = subprocess.run([*COMMAND, "cxr.report.marks", "scripts/cxr/fetch.py"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout == "fetch_source render_report\n"


def test_without_a_module_the_command_prints_the_markdown_table(table):
    out = subprocess.run(COMMAND, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("| module | `--forcerun` |")
    assert len(lines) == 2 + len(table)
    assert "| `cxr.annotations` | curate_annotations |" in out


def test_an_unknown_module_is_an_error_that_names_it():
    out = subprocess.run([*COMMAND, "cxr.nonesuch"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "unknown module 'cxr.nonesuch'" in out.stderr
    assert out.stdout == ""


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_a_tiny_workflow_by_hand(tmp_path):
    """Two rules: `first` imports cxr.a, which imports cxr.b inside a function and cxr.sub.c by
    a relative import; `second` runs a job of cxr.d named as a string (module="d")."""
    root = _write(tmp_path, {
        "Snakefile": 'include: "rules/one.smk"\n',
        "rules/one.smk": """\
            from cxr import e


            rule first:
                output: "x"
                script:
                    "../scripts/first.py"


            rule second:
                output: "y"
                script: "../scripts/second.py"


            rule shell_only:
                shell: "true"
            """,
        "scripts/first.py": "from cxr.a import run\n",
        "scripts/second.py": 'from cxr.logs import run_tensorflow_job\n'
                             'run_tensorflow_job(snakemake, "job", module="d")\n',
        "scripts/cxr/__init__.py": "",
        "scripts/cxr/a.py": "from .sub import c\n\ndef run():\n    from cxr import b\n",
        "scripts/cxr/b.py": "",
        "scripts/cxr/sub/__init__.py": "from . import c\n",
        "scripts/cxr/sub/c.py": "",
        "scripts/cxr/d.py": "",
        "scripts/cxr/e.py": "",
        "scripts/cxr/logs.py": 'def run_tensorflow_job(sm, job, *, module="jobs"):\n    pass\n',
    })  # fmt: skip
    users, workflow = forcerun.forcerun_table(root)
    assert users == {
        "cxr": ["first", "second"],
        "cxr.a": ["first"],
        "cxr.b": ["first"],
        "cxr.d": ["second"],
        "cxr.e": [],
        "cxr.logs": ["second"],
        "cxr.sub": ["first"],
        "cxr.sub.c": ["first"],
    }
    assert workflow == {"cxr", "cxr.e"}
