"""The linters a contributor runs: ruff, snakefmt, snakemake --lint, and a dry run; and our
own checks of the code: what building the DAG imports, and who may call Pillow's Image.open."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.skip(f"{name} not installed")
        return found
    return str(path)


def test_ruff_is_clean():
    result = run(tool("ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    result = run(tool("snakefmt"), "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakemake_lint_is_clean():
    result = run(tool("snakemake"), "--lint")
    assert result.returncode == 0 and "Lints for" not in result.stdout, result.stdout


def test_dry_run_of_the_default_config_plans_every_stage():
    result = run(tool("snakemake"), "-n", "--forceall", "--quiet", "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    for rule in ("generate_synthetic_data", "curate_images", "split_protocol", "write_shards",
                 "extract_features", "train_models", "evaluate_models", "compare_protocols",
                 "plot_learning_curve", "audit_leakage", "render_report"):  # fmt: skip
        assert rule in result.stdout, f"{rule} missing from the dry run"


def test_building_the_dag_imports_no_numerical_library():
    """Every `cxr` import of the rules runs whenever Snakemake plans (each dry run, each job's
    own Snakemake): none may pull in numpy, pandas, Pillow, scikit-learn or scipy, which cost
    ~0.6 s of every plan (measured: a dry run 1.6 s -> 1.0 s)."""
    statements = [
        line.split("#")[0].strip()
        for path in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(("from cxr", "import cxr"))
    ]
    assert len(statements) >= 5, statements
    heavy = ("numpy", "pandas", "PIL", "sklearn", "scipy")
    script = "\n".join(
        [*statements, "import sys", f"print(*[m for m in {heavy} if m in sys.modules])"]
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def image_open_uses(source: str) -> list[int]:
    """Lines of `source` that reach Pillow's Image.open: `Image.open` through any name bound to
    PIL.Image (`from PIL import Image as X`, `import PIL.Image as X`, `PIL.Image`), called or
    not, and `from PIL.Image import open` (or `*`)."""
    tree = ast.parse(source)
    aliases, lines = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "PIL":
            aliases |= {a.asname or a.name for a in node.names if a.name == "Image"}
        elif isinstance(node, ast.ImportFrom) and node.module == "PIL.Image":
            lines += [node.lineno for a in node.names if a.name in ("open", "*")]
        elif isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.name == "PIL.Image" and a.asname}

    def is_image_module(node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in aliases
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "Image"
            and isinstance(node.value, ast.Name)
            and node.value.id == "PIL"
        )

    lines += [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "open" and is_image_module(node.value)
    ]
    return sorted(lines)


def test_only_the_guarded_opener_calls_image_open():
    """Every image file the workflow decodes goes through cxr.images.decode_image (formats of
    the use only, checked before decoding; the bomb limit; no link, no folder, no external
    program): no other module of scripts/ or benchmarks/ may reach Image.open. tests/ is not
    scanned: tests use Image.open to inspect what the workflow wrote."""
    found = {}
    for folder in ("scripts", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if (REPO / "benchmarks" / "out") in path.parents:
                continue  # benchmark output (git-ignored): bench_workflow's baseline checkouts
            lines = image_open_uses(path.read_text(encoding="utf-8"))
            if lines:
                found[path.relative_to(REPO).as_posix()] = lines
    assert list(found) == ["scripts/cxr/images.py"], f"Image.open outside the opener: {found}"
    assert len(found["scripts/cxr/images.py"]) == 1, found


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ("from PIL import Image\nImage.open(p)\n", [2]),
        ("from PIL import Image as Picture\n\nwith Picture.open(p) as i:\n    pass\n", [3]),
        ("import PIL.Image\nPIL.Image.open(p).load()\n", [2]),
        ("import PIL.Image as pim\nimg = pim.open(p)\n", [2]),
        ("from PIL.Image import open as load\nload(p)\n", [1]),
        ("from PIL.Image import *\n", [1]),
        ("from PIL import Image\nreader = Image.open\n", [2]),  # not called here, but reachable
        ("def f(p):\n    from PIL import Image\n    return Image.open(p)\n", [3]),
        ("from PIL import Image, ImageOps\nImage.new('L', (1, 1)); ImageOps.grayscale(i)\n", []),
        ("import tarfile\ntarfile.open(p); open(p); handle.open()\n", []),
        ("Image = object()\nImage.open(p)\n", []),  # not Pillow's
    ],
)
def test_the_image_open_check_sees_each_way_to_reach_it(source, lines):
    assert image_open_uses(source) == lines
