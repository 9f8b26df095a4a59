"""Which rules to force after editing a module of the cxr package (scripts/cxr).

Snakemake reruns a rule when the rule's own `script:` changes, not when a module that script
imports changes. This command reads each rule's `script:` from the .smk files the Snakefile
includes and follows its imports (parsed with `ast`, never imported) through scripts/cxr, so
the table of which rules use which module is derived from the code instead of kept by hand.

    python scripts/forcerun.py cxr.metrics      # the rules to pass to --forcerun, one line
    snakemake --cores 4 --forcerun $(python scripts/forcerun.py cxr.metrics)
    python scripts/forcerun.py                  # every module, as a Markdown table

A rule listed runs again; the rules downstream of it follow, since their inputs are then newer.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "cxr"
# Entry points that name their job's module as a string: cxr.logs.run_tensorflow_job(sm, job,
# module="heads") imports cxr.<module>, by default the `module` default of its signature.
DYNAMIC_IMPORTER = "run_tensorflow_job"

INCLUDE = re.compile(r"""^include:\s*["'](?P<path>[^"']+)["']""", re.MULTILINE)
RULE = re.compile(r"^(?:rule|checkpoint)\s+(?P<name>\w+)\s*:")
SCRIPT = re.compile(r"""^\s+script:\s*(?:["'](?P<path>[^"']+)["'])?\s*$""")
STRING = re.compile(r"""^\s+["'](?P<path>[^"']+)["']""")
# An import of the package in a .smk file (Python lines among Snakemake's own syntax).
SMK_IMPORT = re.compile(
    rf"^[ \t]*(?:from[ \t]+{PACKAGE}[\w.]*[ \t]+import[ \t].+|import[ \t]+{PACKAGE}\b.*)$",
    re.MULTILINE,
)


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under `root`/scripts, by dotted name ('cxr.report.marks';
    a package by its own name, 'cxr.report', for its __init__.py)."""
    scripts = root / "scripts"
    modules = {}
    for path in sorted((scripts / PACKAGE).rglob("*.py")):
        parts = path.relative_to(scripts).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def rule_files(root: Path) -> list[Path]:
    """The .smk files the Snakefile includes, in its order."""
    snakefile = root / "Snakefile"
    return [root / m["path"] for m in INCLUDE.finditer(snakefile.read_text(encoding="utf-8"))]


def rule_scripts(smk: Path) -> dict[str, Path]:
    """Each rule of one .smk file with a `script:` entry point, in file order, and its path
    (relative to the .smk file, as Snakemake reads it)."""
    scripts: dict[str, Path] = {}
    rule, waiting = None, False
    for line in smk.read_text(encoding="utf-8").splitlines():
        if match := RULE.match(line):
            rule, waiting = match["name"], False
        elif rule and (match := SCRIPT.match(line)):
            if match["path"]:
                scripts[rule] = (smk.parent / match["path"]).resolve()
            else:
                waiting = True
        elif waiting and (match := STRING.match(line)):
            scripts[rule] = (smk.parent / match["path"]).resolve()
            waiting = False
    return scripts


def _with_parents(name: str) -> set[str]:
    """'cxr.report.marks' and the packages whose __init__ importing it runs."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _module_default(modules: dict[str, Path]) -> str | None:
    """The default of run_tensorflow_job's `module` parameter, read from its signature."""
    for path in modules.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == DYNAMIC_IMPORTER:
                for arg, default in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True):
                    if arg.arg == "module" and isinstance(default, ast.Constant):
                        return default.value
    return None


def imported(tree: ast.AST, modules: dict[str, Path], here: str, default: str | None) -> set[str]:
    """The package's modules that the code `tree` (module `here`, '' for an entry point)
    imports itself, anywhere in it (function bodies too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to `here`'s package (`here` itself for an __init__)
                is_package = here in modules and modules[here].name == "__init__.py"
                package = here.split(".") if is_package else here.split(".")[:-1]
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from cxr import plots` imports the module cxr.plots; `from cxr.io import x`, cxr.io.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == DYNAMIC_IMPORTER
        ):
            given = [k.value for k in node.keywords if k.arg == "module"]
            module = given[0].value if given and isinstance(given[0], ast.Constant) else default
            names = [f"{PACKAGE}.{module}"] if module else []
        else:
            continue
        for name in names:
            if name in modules:
                found |= _with_parents(name) & modules.keys()
    return found


def closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    """`start` and every module they import, directly or through others."""
    seen, todo = set(), list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def forcerun_table(root: Path = REPO) -> tuple[dict[str, list[str]], set[str]]:
    """For every module of the package, the rules whose `script:` imports it, directly or
    transitively, in the order of the Snakefile's includes; and the modules that the workflow
    itself imports when it builds the DAG (rules/*.smk)."""
    modules = package_modules(root)
    default = _module_default(modules)
    graph = {
        name: imported(ast.parse(path.read_text(encoding="utf-8")), modules, name, default)
        for name, path in modules.items()
    }
    users: dict[str, list[str]] = {name: [] for name in modules}
    workflow: set[str] = set()
    for smk in rule_files(root):
        for rule, script in rule_scripts(smk).items():
            tree = ast.parse(script.read_text(encoding="utf-8"))
            for name in closure(imported(tree, modules, "", default), graph):
                users[name].append(rule)
        for line in SMK_IMPORT.findall(smk.read_text(encoding="utf-8")):
            try:
                tree = ast.parse(line.strip())
            except SyntaxError:
                raise ValueError(
                    f"{smk}: cannot read the import {line.strip()!r}; write it on one line"
                ) from None
            workflow |= closure(imported(tree, modules, "", default), graph)
    return users, workflow


def resolve(name: str, modules: Iterable[str]) -> str | None:
    """The module a user means: 'cxr.metrics', 'metrics', 'scripts/cxr/metrics.py',
    'cxr/report/marks.py' or 'report.marks'; None when there is no such module."""
    text = name.strip().removeprefix("scripts/").removesuffix(".py").removesuffix("/__init__")
    dotted = text.strip("/").replace("/", ".")
    for candidate in (dotted, f"{PACKAGE}.{dotted}"):
        if candidate in modules:
            return candidate
    return None


def markdown(users: dict[str, list[str]], workflow: set[str]) -> str:
    """The table of every module: the rules to force, and whether the DAG reads it too."""
    lines = [
        "| module | `--forcerun` | read when the DAG is built |",
        "| --- | --- | --- |",
    ]
    for name, rules in users.items():
        forced = " ".join(rules) if rules else "(no rule's script)"
        lines.append(f"| `{name}` | {forced} | {'yes' if name in workflow else ''} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="forcerun.py",
        description=(
            "Print the rules to pass to `snakemake --forcerun` after editing MODULE of the cxr "
            "package (scripts/cxr): the rules whose `script:` imports it, directly or through "
            "other modules, found by reading the rules' scripts and the package's imports. "
            "Snakemake watches the scripts themselves, not the modules they import. With no "
            "MODULE, print the whole table as Markdown."
        ),
        epilog=(
            "example: snakemake --cores 4 --forcerun $(python scripts/forcerun.py cxr.metrics). "
            "The rules listed import the module; whether they run the part you edited is not "
            "checked, so the list can hold more rules than needed, and the rules downstream of "
            "one listed rerun anyway. A module that only the workflow itself reads (rules/*.smk: "
            "config checks, paths) needs no --forcerun: the next snakemake run reads it again."
        ),
    )
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help="a module as 'cxr.metrics', 'metrics', 'report.marks' or 'scripts/cxr/metrics.py'",
    )
    parser.add_argument(
        "--root", type=Path, default=REPO, help="the workflow's folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    users, workflow = forcerun_table(args.root)
    if not args.modules:
        print(markdown(users, workflow))
        return 0
    chosen = []
    for name in args.modules:
        module = resolve(name, users)
        if module is None:
            parser.error(
                f"unknown module {name!r}: not a module of scripts/{PACKAGE}; "
                f"run without arguments for the list"
            )
        chosen.append(module)
    wanted = {rule for module in chosen for rule in users[module]}
    in_order = [rule for smk in rule_files(args.root) for rule in rule_scripts(smk)]
    print(" ".join(rule for rule in in_order if rule in wanted))
    for module in chosen:
        if not users[module]:
            where = "the workflow reads it when it builds the DAG" if module in workflow else ""
            print(
                f"{module}: no rule's script imports it"
                + (f"; {where}, so the next run uses it" if where else ""),
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
