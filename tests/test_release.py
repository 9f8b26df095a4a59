"""Artifact-evaluation files: the licence, the citation file (checked by cffconvert, the Citation
File Format's own validator), the claims table of docs/claims.md (each claim's command, output
and test exist), and the release archive (the committed workflow only, same bytes for the same
commit)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SHARED_DATA

CFF_VENV = REPO / ".venv-cff"
CLAIMS = REPO / "docs" / "claims.md"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_licence_and_data_notice_are_referenced_from_readme():
    text = readme()
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert "[LICENSE](LICENSE)" in text and "[DATA-NOTICE.md](DATA-NOTICE.md)" in text
    notice = (REPO / "DATA-NOTICE.md").read_text()
    for terms in ("CC BY 4.0", "license` column", "NIH Clinical Center"):
        assert terms in notice


def test_citation_file_lists_the_works_it_builds_on():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "MIT"
    dois = {ref.get("doi") for ref in cff["references"]}
    # Kermany's data, NIH ChestX-ray8, DeGrave's shortcut study, CLAIM
    for doi in ("10.17632/rscbjbr9sj.2", "10.1109/CVPR.2017.369", "10.1038/s42256-021-00338-7",
                "10.1148/ryai.2020200029"):  # fmt: skip
        assert doi in dois
    version = re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert cff["version"] == version.group(1)


def _cffconvert() -> Path:
    """cffconvert in .venv-cff, built from requirements-cff.txt when missing."""
    exe = CFF_VENV / "bin" / "cffconvert"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(CFF_VENV)], check=True)
        install = subprocess.run(
            [str(CFF_VENV / "bin/pip"), "install", "-q", "-r", str(REPO / "requirements-cff.txt")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if install.returncode != 0:
            shutil.rmtree(CFF_VENV, ignore_errors=True)
            pytest.skip(f"cannot install cffconvert from PyPI: {install.stderr[-500:]}")
    return exe


@pytest.mark.slow  # builds .venv-cff from PyPI the first time
def test_citation_file_is_valid_cff(tmp_path):
    exe = _cffconvert()
    ok = subprocess.run([str(exe), "--validate", "-i", str(REPO / "CITATION.cff")],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid" in ok.stdout
    # The validator must be able to fail: a type the schema does not know.
    bad = tmp_path / "CITATION.cff"
    bad.write_text((REPO / "CITATION.cff").read_text().replace("type: data\n", "type: dataset\n"))
    broken = subprocess.run([str(exe), "--validate", "-i", str(bad)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert broken.returncode != 0


def claims() -> list[dict]:
    """Rows of the claims table, docs/claims.md."""
    rows = []
    for line in CLAIMS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("claim", "---") and not cells[0].startswith("-"):
            rows.append(dict(zip(("claim", "command", "output", "test"), cells, strict=True)))
    return rows


def _defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_claim_names_a_command_an_output_and_an_existing_test():
    rows = claims()
    assert len(rows) >= 8
    for row in rows:
        assert re.search(r"`(snakemake|make) [^`]+`", row["command"]), row
        assert "results/" in row["output"], row
        tests = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row["test"])
        assert tests, row
        for file, name in tests:
            assert name in _defined_tests(REPO / file), f"{file}::{name} ({row['claim']})"


def dry_run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`snakemake <args> -n` on this checkout's Snakefile, planned in tmp_path/run (no job runs).
    It runs from the checkout, so relative paths in `args` (a profile, a config file) mean what
    they mean there; tmp_path/shared links to the checkout's ../shared, so the local datasets'
    `../shared/data` resolve from the scratch folder as from the checkout. config.yaml is added
    unless the command names its own --configfile (a second one would replace it)."""
    workdir = tmp_path / "run"
    workdir.mkdir(exist_ok=True)
    shared = tmp_path / "shared"
    if SHARED_DATA.parent.is_dir() and not shared.exists():
        shared.symlink_to(SHARED_DATA.parent)
    own = {"--configfile", "--configfiles"} & set(args)
    config = [] if own else ["--configfile", str(REPO / "config.yaml")]
    return subprocess.run(
        [str(SNAKEMAKE), *args, "-n", "-s", str(REPO / "Snakefile"), "--directory",
         str(workdir), *config],
        capture_output=True, text=True, timeout=180, cwd=REPO,
    )  # fmt: skip


@pytest.mark.slow
def test_every_claim_command_plans_in_a_dry_run(tmp_path):
    """Each distinct `snakemake` command of the claims table plans (no job runs)."""
    commands = {m for row in claims() for m in re.findall(r"`(snakemake [^`]+)`", row["command"])}
    assert commands
    for command in sorted(commands):
        run = dry_run(command.split()[1:], tmp_path)
        assert run.returncode == 0, f"{command}:\n{run.stdout[-2000:]}{run.stderr[-2000:]}"


def test_release_archive_holds_the_committed_workflow_only(tmp_path):
    if shutil.which("make") is None or not (REPO / ".git").exists():
        pytest.skip("make or a git checkout is missing")
    env = {**os.environ, "DIST": str(tmp_path / "a")}
    first = subprocess.run(["make", "-s", "release", f"DIST={tmp_path / 'a'}"], cwd=REPO,
                           capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = subprocess.run(["make", "-s", "release", f"DIST={tmp_path / 'b'}"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    (archive,) = (tmp_path / "a").glob("*.tar.gz")
    digest = (tmp_path / "a" / f"{archive.name}.sha256").read_text().split()[0]
    assert digest == (tmp_path / "b" / f"{archive.name}.sha256").read_text().split()[0]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    prefix = archive.name.removesuffix(".tar.gz")
    assert f"{prefix}/Snakefile" in names and f"{prefix}/LICENSE" in names
    assert not any(re.search(r"/(results|resources|\.venv[^/]*)/", n) for n in names)
    assert not any(n.endswith((".jpeg", ".jpg", ".tfrecord", ".keras")) for n in names)
