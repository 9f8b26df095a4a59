"""The download stage through Snakemake: a git source pinned at a commit and an archive source
checked by sha256, both served from this machine (git on disk, HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile

import pandas as pd
import pytest
import yaml

from workflow import run_workflow


def git(*args, cwd):
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_fetch_sources_then_curate(synthetic_root, http_server, tmp_path):
    base_url, served, _ = http_server
    # The disease source as a git repository; a later commit deletes the metadata, so only the
    # pinned first commit curates.
    origin = tmp_path / "origin"
    shutil.copytree(synthetic_root / "covid-chestxray-dataset", origin)
    git("init", "-q", "-b", "main", cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "data", cwd=origin)
    pinned = git("rev-parse", "HEAD", cwd=origin).strip()
    git("rm", "-q", "metadata.csv", cwd=origin)
    git("commit", "-q", "-m", "later", cwd=origin)
    # The healthy source as a zip laid out like Kermany's ChestXRay2017.zip.
    archive = served / "ChestXRay2017.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((synthetic_root / "kermany-normal").iterdir()):
            zf.write(path, f"chest_xray/train/NORMAL/{path.name}")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    config = {
        "dataset": "mirror",
        "training": {"architectures": ["MobileNet"]},
        "audit": {"architecture": None},
        "datasets": {"mirror": {"sources": {
            "covid": {"kind": "ieee8023", "root": "resources/mirror/covid", "label": "covid",
                      "download": {"git": str(origin), "commit": pinned[:7]}},
            "kermany": {"kind": "folder", "root": "resources/mirror/kermany/train/NORMAL",
                        "label": "normal", "patient_pattern": r"(?:NORMAL2-)?(IM-\d{4})",
                        "download": {"url": f"{base_url}/ChestXRay2017.zip", "sha256": digest,
                                     "archive_root": "chest_xray",
                                     "dest": "resources/mirror/kermany"}},
        }}},
    }  # fmt: skip
    path = tmp_path / "mirror.yaml"
    path.write_text(yaml.safe_dump(config))
    work = tmp_path / "run"
    run_workflow(work, str(path), targets=("results/curated/images.csv",))
    images = pd.read_csv(work / "results/curated/images.csv")
    assert set(images["source"]) == {"covid", "kermany"}
    head = git("rev-parse", "HEAD", cwd=work / "resources/mirror/covid").strip()
    assert head == pinned
    # A wrong checksum stops the fetch with both digests named, and nothing is extracted.
    config["datasets"]["mirror"]["sources"]["kermany"]["download"]["sha256"] = "0" * 64
    config["datasets"]["mirror"]["sources"]["kermany"]["download"]["dest"] = "resources/other"
    config["datasets"]["mirror"]["sources"]["kermany"]["root"] = "resources/other/train/NORMAL"
    path.write_text(yaml.safe_dump(config))
    failed = run_workflow(
        work, str(path), targets=("results/curated/images.csv",), check=False,
        extra=("--forcerun", "fetch_source"),
    )  # fmt: skip
    log = (work / "logs/fetch_source/kermany.log").read_text()
    assert failed.returncode != 0 and digest in log and "0" * 64 in log
    assert not (work / "resources/other").exists()
