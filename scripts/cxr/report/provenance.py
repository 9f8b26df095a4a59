"""The provenance line under each figure and table: which job made the files it shows (rule,
script, commit, inputs with short SHA-256, settings), read from results/provenance.json.

Templates call `prov(...)` with rule render_report's input names (or paths), optionally
narrowed to the paths containing `like`; `drawn=True` says the picture itself was drawn when
the report was rendered, from those files. The line is a closed <details>, so it costs a
reader nothing until opened."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

from cxr.provenance import SHORT, commit_text

MAX_INPUTS = 8  # inputs named per job; the rest are counted (all are in provenance.json)
MAX_SETTING = 60  # characters of one setting's value


def _short(sha: str | None) -> str:
    return sha[:SHORT] if sha else "–"


def _setting(key: str, value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    if len(text) > MAX_SETTING:
        text = text[: MAX_SETTING - 1] + "…"
    return f"<code>{escape(key)}</code>={escape(text)}"


class ProvenanceNotes:
    """Callable from templates: `{{ prov("evaluations", like="DenseNet121/") }}`."""

    def __init__(self, provenance: Mapping | None, inputs: Mapping[str, Any]) -> None:
        self.provenance = provenance
        self.inputs = {k: [v] if isinstance(v, str) else list(v) for k, v in inputs.items()}

    def paths(self, keys: tuple[str, ...], like: str | None) -> list[str]:
        paths: list[str] = []
        for key in keys:
            if "/" in key:
                paths.append(key)
            else:
                # An input this run does not have (no repeats, no annotations) shows nothing;
                # tests/test_report.py checks that every name the templates use is one of
                # REPORT_ARTIFACTS in rules/report.smk.
                paths.extend(self.inputs.get(key, []))
        return [p for p in dict.fromkeys(paths) if like is None or like in p]

    def __call__(self, *keys: str, like: str | None = None, drawn: bool = False) -> Markup:
        paths = self.paths(keys, like)
        lines: list[str] = []
        if drawn or not paths:
            what, source = (
                ("Drawn", "from the files below")
                if paths
                else ("Computed", "from this run's settings and software")
            )
            lines.append(
                f"<p>{what} by rule <code>render_report</code> (<code>scripts/render_report.py"
                f"</code>) when this report was rendered, {source}.</p>"
            )
        if paths:
            lines.append("<ul>" + "".join(self._job_items(paths)) + "</ul>")
        return Markup(
            '<details class="prov"><summary>provenance</summary>' + "".join(lines) + "</details>"
        )

    def _job_items(self, paths: list[str]) -> list[str]:
        if self.provenance is None:
            return [f"<li><code>{escape(p)}</code>: provenance not recorded</li>" for p in paths]
        artifacts, jobs = self.provenance["artifacts"], self.provenance["jobs"]
        by_job: dict[str | None, list[str]] = {}
        for path in paths:
            by_job.setdefault(artifacts.get(path), []).append(path)
        items = []
        for job, files in by_job.items():
            if job is None:
                items.extend(
                    f"<li><code>{escape(p)}</code>: no job record matches its bytes</li>"
                    for p in files
                )
                continue
            record = jobs[job]
            sha = {o["path"]: o["sha256"] for o in record["outputs"]}
            shown = ", ".join(
                f'<code>{escape(p)}</code> <span class="sha">{_short(sha.get(p))}</span>'
                for p in files
            )
            inputs = record["inputs"]
            named = ", ".join(
                f'<code>{escape(i["path"])}</code> <span class="sha">{_short(i["sha256"])}</span>'
                for i in inputs[:MAX_INPUTS]
            )
            if len(inputs) > MAX_INPUTS:
                named += f" and {len(inputs) - MAX_INPUTS} more"
            settings = ", ".join(_setting(k, v) for k, v in record["params"].items())
            items.append(
                f"<li>{shown}: job <code>{escape(job)}</code>, script <code>"
                f"{escape(record['script'])}</code>, commit <code>{escape(commit_text(record))}"
                f"</code>; from {named or 'no input'}"
                + (f"; settings {settings}" if settings else "")
                + "</li>"
            )
        return items
