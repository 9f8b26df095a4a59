#!/usr/bin/env bash
# The clean-room check: the release archive a reviewer downloads (make release: the committed
# workflow, nothing else), unpacked alone into a new folder, installed from its own
# requirements.txt, runs the embedded default as README's first command does and verifies it
# against its published numbers (scripts/verify.py, expected/synthetic.json).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s release PYTHON=.venv/bin/python >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
room=$(mktemp -d "${TMPDIR:-/tmp}/cxr-clean-room.XXXXXX")
tar -xzf "dist/cxr-repro-${version}.tar.gz" -C "$room"
cd "$room/cxr-repro-${version}"
echo "clean room: $(pwd) (from dist/cxr-repro-${version}.tar.gz)"
python3.11 -m venv .venv && .venv/bin/pip install -q -r requirements.txt
.venv/bin/snakemake --cores 4 >snakemake.log 2>&1 || { tail -40 snakemake.log; exit 1; }
.venv/bin/python scripts/verify.py
