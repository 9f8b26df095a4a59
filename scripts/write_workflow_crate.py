"""Write the repository's RO-Crate metadata (ro-crate-metadata.json, Workflow RO-Crate 1.0).

    python scripts/write_workflow_crate.py           # rewrite it (make workflow-crate)
    python scripts/write_workflow_crate.py --check   # exit 1 if the committed file is stale

The crate describes the workflow for registries such as WorkflowHub: the Snakefile as its main
workflow (language Snakemake, at the version requirements.txt pins), title, abstract, licence,
authors and release date from CITATION.cff, and the files and folders listed in
cxr.crates.WORKFLOW_PARTS. Edit those, not the JSON; tests/test_crates.py fails while the
committed file differs from what this writes. A run's own crate is another command:
`make crate` (results/ro-crate.zip)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from cxr.crates import metadata_text, workflow_crate  # noqa: E402
from cxr.io import write_or_check  # noqa: E402


def pinned_snakemake(repo: Path = REPO) -> str:
    """The Snakemake version requirements.txt pins (what the crate says the workflow runs on)."""
    match = re.search(r"^snakemake==(\S+)", (repo / "requirements.txt").read_text(), re.M)
    if match is None:
        raise SystemExit("requirements.txt pins no snakemake version")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if the file is out of date"
    )
    args = parser.parse_args(argv)
    text = metadata_text(workflow_crate(REPO, snakemake_version=pinned_snakemake()))
    return write_or_check(
        REPO / "ro-crate-metadata.json", text, check=args.check,
        remedy="run python scripts/write_workflow_crate.py",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
