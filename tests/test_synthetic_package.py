"""The layout of the cxr.synthetic package: what the workflow imports when it builds the DAG loads
neither numpy nor Pillow, every public name resolves, and every random stream is one of the
table in cxr.synthetic.streams."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import cxr.synthetic as synthetic
from conftest import REPO
from cxr.synthetic import drawing, generate, streams

PACKAGE = REPO / "scripts" / "cxr" / "synthetic"


def loaded_after(statement: str) -> list[str]:
    """Which of numpy, PIL and pandas a fresh interpreter holds after running `statement`."""
    modules = "[m for m in ('numpy', 'PIL', 'pandas') if m in sys.modules]"
    script = f"{statement}\nimport sys\nprint(*{modules})"
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


def test_what_the_workflow_imports_loads_neither_numpy_nor_pillow():
    common = (REPO / "rules" / "common.smk").read_text(encoding="utf-8")
    imports = re.findall(r"^from cxr\.synthetic\S* import [^#\n]+", common, re.MULTILINE)
    assert len(imports) == 1, imports
    assert loaded_after(imports[0]) == []
    assert loaded_after("import cxr.synthetic.names") == []
    assert loaded_after("from cxr.synthetic import generate_synthetic") == ["numpy", "PIL"]


def test_every_public_name_resolves_from_the_module_that_defines_it():
    assert all(hasattr(synthetic, name) for name in synthetic.__all__)
    assert synthetic.generate_synthetic is generate.generate_synthetic
    assert synthetic.render_chest is drawing.render_chest
    assert not hasattr(synthetic, "_check_args")


def test_every_random_stream_is_one_of_the_table():
    seeded = [
        (path.name, line.strip())
        for path in sorted(PACKAGE.glob("*.py"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if "default_rng(" in line
    ]
    assert seeded == [
        # The opacities' stream, seeded from the image's: images that differ in signal alone
        # share everything else.
        ("drawing.py", "blob_rng = np.random.default_rng(rng.integers(2**63))"),
        ("streams.py", "return np.random.default_rng([seed, stream, *keys])"),
    ]
    table = [name for name in vars(streams) if name.isupper()]
    code = " ".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py"))
    assert [name for name in table if f"streams.{name}" not in code] == []


def test_the_package_docstring_names_every_module():
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert [m for m in modules if f"- `{m}`: " not in synthetic.__doc__] == []
