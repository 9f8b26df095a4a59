# Convenience targets; each runs a command documented in README.md or benchmarks/README.md.
#   make test     the tests                      make report   the workflow (results/report.html)
#   make bench    all benchmarks, reduced settings, then the tables (about 13 minutes on 2 quiet
#                 cores before the protocols layout of issue 10, which added jobs: to be remeasured)
#   make bench-reference   the settings of the tables in benchmarks/README.md, plus the
#                 article's data at the article's sizes (bench-workflow-article, if ../shared/data)
#   make release  dist/cxr-repro-<version>.tar.gz of the committed workflow (no data, no results)
#                 and its .sha256
#   make verify   the workflow, then its numbers against expected/<dataset>.json (VERIFY_FLAGS,
#                 e.g. --context same_machine); exits 1 on a difference
#   make expected the workflow, then expected/<dataset>.json written from it (for the authors)
#   make crate    the workflow, then results/ro-crate.zip: the run as a Workflow Run RO-Crate
#   make workflow-crate   ro-crate-metadata.json (the repository's crate) from CITATION.cff
#   make screenshot  docs/img/report.png: the first screen of results/report.html (headless
#                 Chromium; README shows it; REPORT=path/to/report.html for another run)
# Benchmark figures are appended as JSON lines to benchmarks/out/ (git-ignored).

PYTHON ?= .venv/bin/python
SNAKEMAKE ?= .venv/bin/snakemake
PYTEST ?= .venv/bin/pytest
CORES ?= 4
BENCH_CORES ?= 2

# Reduced settings for `make bench`; override on the command line, e.g.
#   make bench-training TRAINING_FLAGS="--architectures MobileNet --epochs 5"
TRAINING_FLAGS ?= --architectures MobileNet ResNet50 --images 140 --epochs 20
THROUGHPUT_FLAGS ?= --architectures MobileNet ResNet50 DenseNet121
WORKFLOW_FLAGS ?=
SCALE_FLAGS ?= --factors 1 10 50
INCREMENTAL_FLAGS ?=

VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DIST ?= dist
RELEASE = $(DIST)/cxr-repro-$(VERSION).tar.gz

VERIFY_FLAGS ?=

.PHONY: release test report verify expected crate workflow-crate screenshot bench bench-reference bench-training bench-throughput bench-workflow \
	bench-workflow-article bench-scale bench-incremental bench-table

# git archive takes the committed tree only (never results/, resources/, .venv or data), and
# its gzip stream carries the commit's time, so the same commit gives the same bytes.
release:
	@git diff --quiet HEAD -- || echo "release: uncommitted changes are NOT in the archive" >&2
	mkdir -p $(DIST)
	git archive --format=tar.gz --prefix=cxr-repro-$(VERSION)/ -o $(RELEASE) HEAD
	cd $(DIST) && sha256sum cxr-repro-$(VERSION).tar.gz > cxr-repro-$(VERSION).tar.gz.sha256
	@cat $(RELEASE).sha256

test:
	$(PYTEST)

crate:
	$(SNAKEMAKE) --cores $(CORES) results/ro-crate.zip

# The first screen at a common laptop size; a fresh profile and no network, as the report needs
# none (it embeds everything).
REPORT ?= results/report.html
CHROMIUM ?= chromium
screenshot:
	@test -f $(REPORT) || { echo "screenshot: no $(REPORT); run the workflow first" >&2; exit 1; }
	mkdir -p docs/img
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
		--disable-background-networking --user-data-dir=$$(mktemp -d) \
		--window-size=1280,860 --screenshot=docs/img/report.png file://$(abspath $(REPORT))

workflow-crate:
	$(PYTHON) scripts/write_workflow_crate.py

verify:
	$(SNAKEMAKE) --cores $(CORES)
	$(PYTHON) scripts/verify.py $(VERIFY_FLAGS)

expected:
	$(SNAKEMAKE) --cores $(CORES)
	$(PYTHON) scripts/verify.py --write

report:
	$(SNAKEMAKE) --cores $(CORES)

bench: bench-training bench-throughput bench-workflow bench-scale bench-incremental bench-table

bench-training:
	$(PYTHON) benchmarks/bench_training.py $(TRAINING_FLAGS)

bench-throughput:
	$(PYTHON) benchmarks/bench_throughput.py $(THROUGHPUT_FLAGS)

# Each end-to-end run is measured beside the same run of commit BASELINE (issue 20: aa21570 is the
# last layout with one TensorFlow job per run), in the same session: it runs the workflow twice.
# `make bench-workflow BASELINE=` measures this checkout alone.
BASELINE ?= aa21570
BASELINE_FLAGS = $(if $(BASELINE),--baseline $(BASELINE))
# The article's images, as benchmarks/common.py's SHARED_DATA finds them.
ARTICLE_DATA = ../shared/data

# README's command: --cores $(CORES) (4), two TensorFlow jobs of 2 threads side by side on 2 cores.
bench-workflow:
	$(PYTHON) benchmarks/bench_workflow.py --cores $(CORES) $(BASELINE_FLAGS) $(WORKFLOW_FLAGS)

# The end-to-end run (and its forward-pass figures) on the article's own images, article sizes;
# skipped where ../shared/data is missing.
bench-workflow-article:
	@if [ -d $(ARTICLE_DATA) ]; then \
		set -x; $(PYTHON) benchmarks/bench_workflow.py --cores $(CORES) --dataset article_local \
			--article-sizes $(BASELINE_FLAGS); \
	else \
		echo "bench-workflow-article: $(ARTICLE_DATA) (the article's images) is missing: skipped"; \
	fi

bench-scale:
	$(PYTHON) benchmarks/bench_scale.py --cores $(BENCH_CORES) $(SCALE_FLAGS)

bench-incremental:
	$(PYTHON) benchmarks/bench_incremental.py --cores $(BENCH_CORES) $(INCREMENTAL_FLAGS)

bench-table:
	$(PYTHON) benchmarks/table.py

bench-reference:
	$(MAKE) bench-training TRAINING_FLAGS="--architectures MobileNet ResNet50 DenseNet121 --images 140 --epochs 20 --in-memory"
	$(MAKE) bench-throughput bench-workflow bench-scale bench-incremental
	$(MAKE) bench-workflow WORKFLOW_FLAGS="--article-sizes --workdir benchmarks/out/scratch/workflow-224"
	$(MAKE) bench-workflow-article
	$(MAKE) bench-table
