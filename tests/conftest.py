"""Shared fixtures. `scripts/` is on sys.path through pyproject's pytest `pythonpath`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cxr.config import sources_at
from cxr.curate import Rules

# One SLURM cluster per session, shared by every module that asks for it.
from slurm_cluster import slurm_cluster  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data not found at {SHARED_DATA}")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The embedded default's synthetic data set, generated once per test session."""
    from cxr.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    config = _config()
    generate_synthetic(root, seed=config["seed"], **config["datasets"]["synthetic"]["synthetic"])
    return root


def synthetic_sources(root: Path) -> dict:
    """The synthetic dataset's `sources` block of config.yaml, pointed at `root`."""
    return sources_at(_config(), "synthetic", root)


def article_sources(root: Path) -> dict:
    """The article_local dataset's `sources` block, pointed at `root` (../shared/data)."""
    return sources_at(_config(), "article_local", root)


def _config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


@functools.cache
def _schema_defaults() -> dict:
    from cxr.config import validate_schema

    stub = {"kind": "folder", "root": ".", "label": "x"}
    config = {"dataset": "stub", "datasets": {"stub": {"sources": {"stub": stub}}}}
    validate_schema(config, REPO / "rules" / "config.schema.yaml")
    return config


def schema_defaults() -> dict:
    """The config that rules/config.schema.yaml's defaults alone make (a stub dataset aside):
    what a test uses where it means "the workflow's default", so that the schema stays its
    one home."""
    return copy.deepcopy(_schema_defaults())


def curation_rules(**changes) -> Rules:
    """Curation's rules at the schema's defaults (the article's selection), with `changes`."""
    config = schema_defaults()
    rules = Rules.from_config(
        config["curation"], config["labels"], config["marks"]["chroma_threshold"]
    )
    return dataclasses.replace(rules, **changes)


class RecordingHandler(SimpleHTTPRequestHandler):
    """Serves files and records each requested path (to tell cache hits from downloads)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_server(tmp_path):
    """Serve tmp_path/srv on 127.0.0.1 only; yields (origin url, served folder, request paths)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(RecordingHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, httpd.requests
    httpd.shutdown()
    httpd.server_close()
