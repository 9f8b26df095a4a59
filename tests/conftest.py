"""Shared fixtures. `scripts/` is on sys.path through pyproject's pytest `pythonpath`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cxr.config import load, sources_at, validate_schema
from cxr.curate import Rules
from cxr.heads import TrainSettings

# One SLURM cluster per session, shared by every module that asks for it.
from slurm_cluster import slurm_cluster  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SCHEMA = REPO / "rules" / "config.schema.yaml"


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
    config = _validated_config()
    generate_synthetic(root, seed=config["seed"], **config["datasets"]["synthetic"]["synthetic"])
    return root


def synthetic_sources(root: Path) -> dict:
    """The synthetic dataset's `sources` block of config.yaml (schema defaults filled in),
    pointed at `root`."""
    return sources_at(_validated_config(), "synthetic", root)


def article_sources(root: Path) -> dict:
    """The article_local dataset's `sources` block (schema defaults filled in), pointed at
    `root` (../shared/data)."""
    return sources_at(_validated_config(), "article_local", root)


def repo_config() -> dict:
    """config.yaml as written, before the workflow resolves and validates it."""
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def validated(config: dict) -> dict:
    """A copy of `config` checked against rules/config.schema.yaml, the schema's defaults filled
    in (cxr.config.validate_schema, as the workflow's cxr.config.load does)."""
    config = copy.deepcopy(config)
    validate_schema(config, SCHEMA)
    return config


@functools.cache
def _validated_config() -> dict:
    return load(repo_config(), {}, SCHEMA)[0]


def validated_config() -> dict:
    """config.yaml as the workflow sees it with no settings of the user's (cxr.config.load):
    the chosen dataset's overrides merged in, the schema's defaults filled in, checked."""
    return copy.deepcopy(_validated_config())


@functools.cache
def _schema_defaults() -> dict:
    stub = {"kind": "folder", "root": ".", "label": "x"}
    config = {"dataset": "stub", "datasets": {"stub": {"sources": {"stub": stub}}}}
    validate_schema(config, SCHEMA)
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


def training_settings(**changes) -> TrainSettings:
    """Training settings at the schema's defaults, seeded with the first of training.seeds,
    with `changes`."""
    training = schema_defaults()["training"]
    settings = TrainSettings.from_config(training, training["seeds"][0])
    return dataclasses.replace(settings, **changes)


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
