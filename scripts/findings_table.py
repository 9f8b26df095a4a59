"""README's findings table, written from expected/article_local.json (the numbers a rerun of the
article's data must reproduce), so the front page never states a number the workflow did not
measure.

    python scripts/findings_table.py                 # print the block
    python scripts/findings_table.py --write README.md
    python scripts/findings_table.py --check README.md   # exit 1 if README's block differs

The block sits between the lines `<!-- findings:start -->` and `<!-- findings:end -->`; it shows
per architecture the article's protocol (image-level split) against the patient-disjoint one on
the internal test split, and how many healthy adults from another hospital (NIH) each model calls
COVID-19, each with its 95% interval, then the two shortcut probes; stamped with the commit,
date and CPU the expected file was measured on."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from cxr.io import write_or_check  # noqa: E402

START, END = "<!-- findings:start -->", "<!-- findings:end -->"
ARCHITECTURES = ("MobileNet", "ResNet50", "DenseNet121")
RUN = "seed0"  # the run both protocols have


def _value(q: dict, key: str) -> float:
    try:
        return q[key]["value"]
    except KeyError:
        raise SystemExit(f"findings_table: {key} is not in the expected file") from None


def _with_interval(q: dict, key: str, *, percent: bool = False) -> str:
    low, high = _value(q, f"{key}.ci95_low"), _value(q, f"{key}.ci95_high")
    if percent:
        return f"{_value(q, key):.0%} ({low:.0%}–{high:.0%})"
    return f"{_value(q, key):.2f} ({low:.2f}–{high:.2f})"


def findings(expected: dict) -> str:
    """The Markdown block between the markers (markers included)."""
    q = expected["quantities"]
    where = expected["written_from"]
    rows = [
        "| architecture | article's protocol: accuracy | article's protocol: ROC AUC "
        "| patient-disjoint: ROC AUC | healthy NIH adults called COVID-19 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arch in ARCHITECTURES:
        article, patient = f"article.{arch}.{RUN}", f"patient.{arch}.{RUN}"
        nih = f"{patient}.external.nih.positive_call_rate"
        rows.append(
            f"| {arch} | {_with_interval(q, f'{article}.test.accuracy', percent=True)} "
            f"| {_with_interval(q, f'{article}.test.roc_auc')} "
            f"| {_with_interval(q, f'{patient}.test.roc_auc')} "
            f"| {_with_interval(q, nih, percent=True)} of {q[nih]['n']} |"
        )
    probes = (
        f"A classifier that sees only the image borders (the lungs blanked) separates the classes "
        f"with ROC AUC {_value(q, 'audit.border_probe.auc'):.2f}; one that sees only file size, "
        f"format and intensity statistics, {_value(q, 'audit.trivial_feature_probe.auc'):.2f}."
    )
    stamp = (
        f"Seed 0 of each protocol on `article_local` ({_value(q, 'curation.covid.included'):.0f} "
        f"COVID-19 and {_value(q, 'curation.kermany.included'):.0f} Kermany images; "
        f"{_value(q, 'curation.nih.included'):.0f} NIH adults as the external set), 95% intervals "
        f"in brackets; measured at commit `{where['commit']}` on {where['date']} on "
        f"{where['cpu']} (CPU, no GPU). `python scripts/findings_table.py --write README.md` "
        "regenerates this block from `expected/article_local.json`."
    )
    return "\n".join([START, *rows, "", probes, "", stamp, END])


def replace_block(text: str, block: str, name: str = "README.md") -> str:
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{name} needs exactly one {START} ... {END} block")
    return text[: text.index(START)] + block + text[text.index(END) + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--expected", type=Path, default=REPO / "expected/article_local.json",
        help="the expected file to read (default: expected/article_local.json)",
    )  # fmt: skip
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, metavar="FILE", help="replace FILE's block")
    group.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE's block differs")
    args = parser.parse_args(argv)
    block = findings(json.loads(args.expected.read_text()))
    target = args.write or args.check
    if target is None:
        print(block)
        return 0
    return write_or_check(
        target, replace_block(target.read_text(), block, target.name), check=bool(args.check),
        remedy=f"its findings block differs from {args.expected.name}; rerun with --write",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
