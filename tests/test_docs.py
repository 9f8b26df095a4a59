"""README.md and the manual in docs/: every relative link and anchor resolves inside the
repository, every page is reachable from the front page and the index, and every `snakemake`
command their code blocks show plans in a dry run."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from test_release import dry_run

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SHELLS = {"bash", "sh", "shell", "console"}


def split_blocks(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The page without its fenced code blocks (each line blanked, so line numbers stay), and
    the blocks as (language, content), each line taken out of its list indentation."""
    prose, blocks = [], []
    fence = None
    for line in text.splitlines():
        match = FENCE.match(line)
        if fence is None and match:
            fence, indent, language, body = match.group(2), len(match.group(1)), match.group(3), []
            prose.append("")
        elif fence is not None and re.fullmatch(rf"\s*{fence[0]}{{{len(fence)},}}\s*", line):
            blocks.append((language, "\n".join(body)))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (links and markup dropped), lower case,
    punctuation other than hyphens and underscores removed, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page defines: its headings' slugs (a repeated one gets -1, -2, ...) and
    explicit ids (`<a id="...">`, `<a name="...">`, `{#...}`)."""
    prose, _ = split_blocks(text)
    seen: Counter[str] = Counter()
    found = set()
    for match in re.finditer(r"^ {0,3}#{1,6}[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", prose, re.M):
        slug = github_slug(match.group(1))
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", prose))
    return found | set(re.findall(r"\{#([\w-]+)\}", prose))


def link_targets(text: str) -> list[str]:
    """Targets of the page's links and images (inline, reference definitions, HTML href/src),
    outside code blocks and code spans."""
    prose, _ = split_blocks(text)
    prose = re.sub(r"(`+)(?:(?!\1).)+?\1", "", prose, flags=re.S)
    inline = re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)", prose)
    defined = re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)", prose, re.M)
    html = re.findall(r"(?:href|src)=\"([^\"]+)\"", prose)
    return inline + defined + html


def broken_links(page: Path, root: Path) -> list[tuple[str, str]]:
    """(target, why) for each relative link of `page` that does not resolve: a missing file, a
    file outside `root` (the repository: GitHub shows nothing else), or an anchor that is not a
    heading or id of its target page. URLs (`https:`, `mailto:`) are not followed."""
    problems = []
    for target in link_targets(page.read_text(encoding="utf-8")):
        if re.match(r"[a-zA-Z][\w+.-]*:|//", target):
            continue
        file, _, anchor = target.partition("#")
        destination = (page.parent / unquote(file)).resolve() if file else page.resolve()
        if not destination.is_relative_to(root.resolve()):
            problems.append((target, "outside the repository"))
        elif not destination.exists():
            problems.append((target, "no such file"))
        elif anchor and destination.suffix != ".md":
            problems.append((target, "an anchor into a file that is not Markdown"))
        elif anchor and anchor not in anchors(destination.read_text(encoding="utf-8")):
            problems.append((target, f"no heading or id '{anchor}' in {destination.name}"))
    return problems


def test_the_link_checker_finds_each_kind_of_broken_link(tmp_path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs/a.md").write_text(
        "# A\n\n## Re-running parts (GPU, `SLURM`)\n\n## Re-running parts (GPU, `SLURM`)\n\n"
        "```bash\n# not a heading\n```\n"
    )
    (tmp_path / "outside.md").write_text("# Outside\n")
    page = root / "README.md"
    page.write_text(
        "# Intro\n\n"
        "[ok](docs/a.md#re-running-parts-gpu-slurm), [self](#intro),\n"
        "[repeated](docs/a.md#re-running-parts-gpu-slurm-1), [web](https://example.org/x#y),\n"
        "`[code span](nowhere.md)`\n"
        "[no file](docs/b.md) [bad anchor](docs/a.md#not-a-heading) [outside](../outside.md)\n"
        "[no anchor](#nope) ![no image](docs/img/x.png)\n"
        "\n```bash\n[in a block](nowhere.md)\n```\n"
    )  # fmt: skip
    problems = dict(broken_links(page, root))
    assert set(problems) == {
        "docs/b.md", "docs/a.md#not-a-heading", "../outside.md", "#nope", "docs/img/x.png",
    }  # fmt: skip
    assert problems["../outside.md"] == "outside the repository"
    assert problems["docs/b.md"] == "no such file"
    assert problems["#nope"] == "no heading or id 'nope' in README.md"


def test_github_slugs():
    assert github_slug("The article datasets' settings") == "the-article-datasets-settings"
    assert github_slug("On a SLURM cluster (GPU training)") == "on-a-slurm-cluster-gpu-training"
    assert github_slug("3c. Jobs sized to their work: the layouts side by side (issue 20)") == (
        "3c-jobs-sized-to-their-work-the-layouts-side-by-side-issue-20"
    )
    assert github_slug("Conda instead of the `.venv`") == "conda-instead-of-the-venv"
    assert github_slug("TensorFlow's CUDA probe") == "tensorflows-cuda-probe"
    assert github_slug("[Link](x.md) and train_models") == "link-and-train_models"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    problems = broken_links(page, REPO)
    assert not problems, "\n".join(f"{target}: {why}" for target, why in problems)


def test_the_front_page_and_the_index_link_every_page():
    for index in (REPO / "README.md", REPO / "docs" / "README.md"):
        linked = {
            (index.parent / target.partition("#")[0]).resolve()
            for target in link_targets(index.read_text(encoding="utf-8"))
        }
        missing = [p.name for p in PAGES[1:] if p != index and p.resolve() not in linked]
        assert not missing, f"{index.relative_to(REPO)} does not link {missing}"


def test_the_markers_table_lists_the_markers_pytest_knows():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    text = (REPO / "docs" / "tests.md").read_text(encoding="utf-8")
    section = text.split("## Markers", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", section, re.M)) == declared


# Commands shown in code blocks ------------------------------------------------------------------


def shell_commands(script: str) -> list[str]:
    """The simple commands of a shell block: continuation lines joined, comments and `$ `
    prompts dropped, lists (`&&`, `||`, `;`) and pipelines split."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line.strip().removeprefix("$ "))
        commands += [part.strip() for part in re.split(r"&&|\|\|?|;", line) if part.strip()]
    return commands


def documented_commands(pages: list[Path], root: Path = REPO) -> dict[str, dict]:
    """Each distinct `snakemake` command of the pages' code blocks (`.venv/bin/snakemake` is
    `snakemake`), with the pages that show it (relative to `root`) and the files it needs: a
    YAML block whose first line is `# <file>, used as: <command>` is that file."""
    found: dict[str, dict] = {}
    for page in pages:
        for language, content in split_blocks(page.read_text(encoding="utf-8"))[1]:
            files, commands = {}, []
            if language in SHELLS:
                commands = shell_commands(content)
            elif language in ("yaml", "yml"):
                used = re.match(r"#\s*(\S+), used as: (.+)", content)
                if used:
                    files, commands = {used.group(1): content}, [used.group(2).strip()]
            for command in commands:
                words = command.split()
                if Path(words[0]).name != "snakemake":
                    continue
                key = " ".join(["snakemake", *words[1:]])
                entry = found.setdefault(key, {"pages": [], "files": {}})
                entry["pages"].append(str(page.relative_to(root)))
                entry["files"].update(files)
    return found


def make_targets(pages: list[Path]) -> set[str]:
    """The targets of the `make` commands in the pages' shell blocks (options and VAR=value
    left out)."""
    return {
        word
        for page in pages
        for language, content in split_blocks(page.read_text(encoding="utf-8"))[1]
        if language in SHELLS
        for command in shell_commands(content)
        if command.split()[0] == "make"
        for word in command.split()[1:]
        if not word.startswith("-") and "=" not in word
    }


def local_datasets() -> set[str]:
    """Datasets that read ../shared/data (run only where the folder is, as `realdata` tests)."""
    datasets = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"]
    return {
        name
        for name, dataset in datasets.items()
        if any(s["root"].startswith("../shared/") for s in dataset["sources"].values())
    }


def test_the_command_finder_reads_shell_and_yaml_blocks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "Inline `snakemake --bogus` is not a block.\n\n"
        "1. Step:\n\n   ```bash\n   python3.11 -m venv .venv && .venv/bin/snakemake --cores 4\n"
        "   $ snakemake --cores 1 \\\n       --until fetch_weights   # a comment\n   ```\n\n"
        "```yaml\n# extra.yaml, used as: snakemake --configfile config.yaml extra.yaml\na: 1\n```\n"
        "```python\nsnakemake --not-shell\n```\n"
    )  # fmt: skip
    found = documented_commands([page], root=tmp_path)
    assert found["snakemake --cores 4"]["pages"] == ["page.md"]
    assert set(found) == {
        "snakemake --cores 4", "snakemake --cores 1 --until fetch_weights",
        "snakemake --configfile config.yaml extra.yaml",
    }  # fmt: skip
    assert found["snakemake --configfile config.yaml extra.yaml"]["files"] == {
        "extra.yaml": "# extra.yaml, used as: snakemake --configfile config.yaml extra.yaml\na: 1"
    }


def test_every_make_target_shown_exists():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    shown = make_targets(PAGES)
    assert shown, "no make command found: the finder is broken"
    assert shown <= targets, f"not targets of the Makefile: {sorted(shown - targets)}"


COMMANDS = documented_commands(PAGES)


def _param(command: str) -> pytest.param:
    config = re.search(r"dataset=(\w+)", command)
    local = config is not None and config.group(1) in local_datasets()
    return pytest.param(command, id=command, marks=[pytest.mark.realdata] if local else [])


@pytest.mark.slow
@pytest.mark.parametrize("command", [_param(c) for c in sorted(COMMANDS)])
def test_every_snakemake_command_shown_plans_in_a_dry_run(command, tmp_path):
    """Each distinct command plans (test_release's dry_run: no job runs). A command on the
    article's local data is marked `realdata`, as every test that reads ../shared/data is, and
    skips where the folder is absent. None is skipped for needing a cluster or conda: the
    SLURM profile plans without one, and the one conda command (creating the envs) is shown
    inline, not in a block, as it needs the conda channels."""
    files = {}
    for name, content in COMMANDS[command]["files"].items():
        files[name] = tmp_path / name
        files[name].write_text(content)
    expanded = re.sub(
        r"\$\(([^)]*)\)",
        lambda m: subprocess.run(["bash", "-c", m.group(1)], cwd=REPO, capture_output=True,
                                 text=True, check=True, timeout=60).stdout.strip(),
        command,
    )  # fmt: skip
    args = [str(files.get(word, word)) for word in shlex.split(expanded)[1:]]
    run = dry_run(args, tmp_path)
    pages = ", ".join(COMMANDS[command]["pages"])
    assert run.returncode == 0, f"{command} ({pages}):\n{run.stdout[-2000:]}{run.stderr[-2000:]}"


def test_the_pages_show_commands_to_plan():
    # The front page's first command, the article's data, a config file of a block, a profile.
    assert {
        "snakemake --cores 4",
        "snakemake --cores 4 --config dataset=article_local",
        "snakemake --cores 4 --configfile config.yaml my-protocols.yaml",
        "snakemake --workflow-profile profiles/slurm --config dataset=article_local",
    } <= set(COMMANDS)
