"""Verify a finished run against its published numbers, or write them (for the authors).

  python scripts/verify.py                        results/measured.json against
                                                  expected/<its dataset>.json, context other_cpu
  python scripts/verify.py --context same_machine the same bytes: every tolerance 0
  python scripts/verify.py --write                write expected/<dataset>.json from this run

results/measured.json is written by the workflow (rule measure_results, part of every run:
`snakemake --cores 4` first). The table lists each quantity's value, the expected value, the
tolerance of the context and the verdict; the exit status is 1 when a quantity differs beyond
its tolerance or is missing from the run, 0 otherwise. `make verify` runs the workflow, then this.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from cxr.io import read_json, write_json  # noqa: E402
from cxr.provenance import git_commit  # noqa: E402
from cxr.verify import CONTEXTS, WHY, compare, expected_file, failed, table_text  # noqa: E402


def today() -> str:
    """The date the expected values were written (README's findings table shows it)."""
    return datetime.date.today().isoformat()


def cpu_model() -> str:
    """The CPU's model name (what the same_machine values hold on), from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    """The checkout's commit as `git describe --always --dirty --abbrev=12` writes it (the
    expected files' form), read as every job reads it (cxr.provenance.git_commit)."""
    found = git_commit(REPO)
    if not found["commit"]:
        return "unknown (not a git checkout)"
    return found["commit"][:12] + ("-dirty" if found["dirty"] else "")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog="Tolerances, per kind of quantity: "
        + "; ".join(f"{kind}: {why}" for kind, why in WHY.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--measured", type=Path, default=Path("results/measured.json"),
        help="the run's quantities (default: results/measured.json)",
    )  # fmt: skip
    parser.add_argument(
        "--expected", type=Path, default=None,
        help="the expected file (default: expected/<the run's dataset>.json in the repository)",
    )  # fmt: skip
    parser.add_argument(
        "--context", choices=CONTEXTS, default="other_cpu",
        help="which tolerances apply: same_machine (0: the same bytes), other_cpu (default), "
        "gpu",
    )  # fmt: skip
    parser.add_argument(
        "--all", action="store_true", help="list every quantity, not only those that do not pass"
    )
    parser.add_argument(
        "--write", action="store_true",
        help="write the expected file from this run instead of comparing (for the authors)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if not args.measured.is_file():
        print(
            f"verify: {args.measured} does not exist; run the workflow first "
            "(snakemake --cores 4, or make verify)",
            file=sys.stderr,
        )
        return 2
    measured = read_json(args.measured)
    dataset = measured["dataset"]
    expected_path = args.expected or REPO / "expected" / f"{dataset}.json"
    if args.write:
        write_json(
            expected_path,
            expected_file(
                measured["quantities"], dataset=dataset,
                written_from={"commit": commit(), "cpu": cpu_model(), "date": today()},
            ),
        )  # fmt: skip
        print(f"wrote {expected_path}: {len(measured['quantities'])} quantities")
        return 0
    if not expected_path.is_file():
        print(
            f"verify: no expected file {expected_path} for dataset {dataset!r}; an author writes "
            "one with --write",
            file=sys.stderr,
        )
        return 2
    expected = read_json(expected_path)
    if expected.get("dataset") != dataset:
        print(
            f"verify: {expected_path} is for dataset {expected.get('dataset')!r}, the run is "
            f"{dataset!r}",
            file=sys.stderr,
        )
        return 2
    rows = compare(expected, measured["quantities"], args.context)
    bad = failed(rows)
    counts = {v: sum(r.verdict == v for r in rows) for v in ("pass", "differs", "missing", "new")}
    shown = rows if args.all else [r for r in rows if r.verdict != "pass"]
    if shown:
        print(table_text(shown))
    where = expected.get("written_from", {})
    print(
        f"\n{dataset}, context {args.context}: {counts['pass']} pass, {counts['differs']} "
        f"differ, {counts['missing']} missing, {counts['new']} new (of {len(rows)}); expected "
        f"values from commit {where.get('commit', '?')} on {where.get('cpu', '?')}"
    )
    print(json.dumps({"verified": not bad, **counts}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
