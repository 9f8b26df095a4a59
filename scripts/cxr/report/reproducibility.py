"""Context of report/reproducibility.html.j2: the workflow's commit, the commands that rerun it,
package versions, input checksums and the configuration."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import yaml

from cxr import provenance
from cxr.io import sha256_file
from cxr.provenance import commit_text, plain

log = logging.getLogger(__name__)

PACKAGES = (
    "snakemake", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "pillow", "jinja2",
)  # fmt: skip
DEFAULT_DATASET = "synthetic"  # the embedded default, used when config.yaml cannot be read


def package_versions(names: tuple[str, ...] = PACKAGES) -> list[dict]:
    versions = []
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        versions.append({"name": name, "version": version})
    return versions


def git_commit(repo_dir: Path | None) -> str:
    """HEAD of the workflow's checkout, '+ uncommitted changes' when dirty; 'unknown' if none."""
    return commit_text(provenance.git_commit(repo_dir))


def default_dataset(repo_dir: Path | None) -> str:
    """The `dataset` of the workflow's own config.yaml (what `snakemake` alone runs)."""
    try:
        return yaml.safe_load((repo_dir / "config.yaml").read_text())["dataset"]
    except (OSError, TypeError, KeyError, yaml.YAMLError):
        return DEFAULT_DATASET


def commands(dataset: str, default: str) -> dict:
    everything = "snakemake --cores 4"
    if dataset != default:
        everything += f" --config dataset={dataset}"
    return {"all": everything, "report": "snakemake --cores 1 --forcerun render_report"}


def checksums(manifest: dict, files: list[str]) -> list[dict]:
    """SHA-256 of every shard (as the manifest records it), then of each file in `files`."""
    rows = [
        {"file": f"{split}/{shard['file']}", "sha256": shard["sha256"], "count": shard["count"]}
        for split, entry in manifest.get("splits", {}).items()
        for shard in entry.get("shards", [])
    ]
    for path in files:
        rows.append({"file": Path(path).name, "sha256": sha256_file(path), "count": None})
    return rows


def context(
    *, config: dict, dataset: str, manifest: dict, files: list[str], repo_dir: Path | None
) -> dict:
    """The key reproducibility.html.j2 shows; `files` are the curated tables to checksum."""
    return {
        "reproducibility": {
            "config_yaml": yaml.safe_dump(plain(config), sort_keys=False, allow_unicode=True),
            "packages": package_versions(),
            "commit": git_commit(repo_dir),
            "checksums": checksums(manifest, files),
            "shard_encoding": manifest.get("encoding"),
            "shard_image_size": manifest.get("image_size"),
            "commands": commands(dataset, default_dataset(repo_dir)),
        }
    }
