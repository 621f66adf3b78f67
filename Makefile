# Learning Rates, Hands-On. Two commands set everything up: `make book` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# tools that nbgrader and jupyter-book start (alembic, jupyter) come from the venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
STAMP := $(VENV)/.installed
# pip's global config here lists extra indexes that may not exist; keep the log readable.
QUIET_PIP := grep -v -e "is ignored: it is neither a file nor a directory" || true

.PHONY: help venv book test test-quick bench lint lab exercises autograde clean experiments

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing lrlib and its extras into $(VENV) (pinned by constraints.txt)..."
	$(PY) -m pip install -q -c constraints.txt -e '.[all]' 2>&1 | { $(QUIET_PIP); }
	@# mup, the tests' muP oracle, declares torchvision and seaborn, which it never imports for
	@# what we use; PyPI's torchvision does not load beside this torch. Its own code needs only
	@# torch and pyyaml, installed above.
	$(PY) -m pip install -q --no-deps -c constraints.txt mup 2>&1 | { $(QUIET_PIP); }
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install lrlib with every extra

# FAST=1 shrinks every chapter's loops for local iteration. It builds into its own folder, with its
# own execution cache, so a FAST result can never be served to the real build.
FAST ?=
BOOK_OUT := $(if $(FAST),_build/fast,.)

book: $(STAMP)  ## execute every chapter (cached) and build the site into _build/html (FAST=1: quick, _build/fast/)
	$(if $(FAST),LRLIB_FAST=1) $(VENV)/bin/jupyter-book build . --path-output $(BOOK_OUT) -W -n --keep-going
	@echo "Open $(BOOK_OUT)/_build/html/index.html in a browser."

# Stored experiments (experiments/*.yaml): runs what is missing, interrupted or stale, resumably.
# NAME=<one> (or several, space-separated), DEVICE=cuda, WORKERS=2, DASK=<scheduler address>, FORCE=1.
NAME ?=
DEVICE ?=
WORKERS ?= 1
DASK ?=
experiments: $(STAMP)  ## run stored experiments that are missing or stale (NAME=, DEVICE=cuda, WORKERS=, DASK=)
	$(PY) -m lrlib.experiments $(NAME) $(if $(DEVICE),--device $(DEVICE)) --workers $(WORKERS) \
		$(if $(DASK),--dask $(DASK)) $(if $(FORCE),--force)
	$(PY) -m lrlib.experiments --list

lint: $(STAMP)  ## ruff over the package, tests and solutions
	$(VENV)/bin/ruff check lrlib lrgrade tests solutions benchmarks book/_ext nbgrader_config.py

# The site's browser test drives Debian's Chromium (Playwright downloads no browser).
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	@echo "Installing Debian's chromium for the browser test of the site..."
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium > /dev/null

# The grading sandbox is Debian's bubblewrap (bwrap); `make autograde` says how to install it where it is
# missing, `make test` installs it so that the sandbox is tested, not skipped.
BWRAP := /usr/bin/bwrap

$(BWRAP):
	@echo "Installing Debian's bubblewrap for the grading sandbox's tests..."
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends bubblewrap > /dev/null

test: $(STAMP) lint $(CHROMIUM) $(BWRAP)  ## lint, unit tests, the book built once in full mode, solutions graded, the site in Chromium
	$(PY) -m pytest --durations=25

test-quick: $(STAMP) lint  ## the inner loop: lint, unit tests and doctests; no notebook, no book build
	$(PY) -m pytest -m "not slow" -q

bench: $(STAMP)  ## seconds per chapter (full and FAST) and per solution against the budgets; batched speed-up
	$(PY) benchmarks/notebook_times.py
	$(PY) benchmarks/batched_sweep.py --ks 1 4 16 --repeats 2

LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.json

$(LAB_OVERRIDES): $(STAMP)
	@mkdir -p $(dir $@)
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"markdown": "Jupytext Notebook", "myst": "Jupytext Notebook"}}}' > $@

lab: $(STAMP) $(LAB_OVERRIDES)  ## JupyterLab, with the MyST chapters opening as notebooks (jupytext)
	$(VENV)/bin/jupyter lab book/

exercises: $(STAMP)  ## regenerate exercises/ from solutions/ with nbgrader
	for dir in solutions/*/; do \
	  $(VENV)/bin/nbgrader generate_assignment "$$(basename $$dir)" --force --no-db --log-level=WARN; \
	done
	@echo "exercises/ regenerated; commit it."

# The course folder to grade in (the one holding nbgrader_config.py) and its assignments.
COURSE ?= .
ASSIGNMENT ?= $(notdir $(patsubst %/,%,$(wildcard $(COURSE)/solutions/*/)))
# e.g. AUTOGRADE_FLAGS="--workers 8 --cell-timeout 120" or "--dask tcp://scheduler:8786"
AUTOGRADE_FLAGS ?=

autograde: $(STAMP)  ## grade submitted/ isolated and in parallel, write feedback/ and grades.csv (ASSIGNMENT=name)
	cd $(COURSE) && for name in $(ASSIGNMENT); do \
	  if compgen -G "submitted/*/$$name/$$name.ipynb" > /dev/null; then \
	    $(abspath $(PY)) -m lrgrade "$$name" $(AUTOGRADE_FLAGS); \
	  else echo "$$name: nothing in submitted/*/$$name/"; fi; \
	done
	@cd $(COURSE) && if [ -f gradebook.db ]; then \
	  nbgrader export --to grades.csv --log-level=WARN && echo "grades: $(COURSE)/grades.csv, feedback: $(COURSE)/feedback/"; \
	fi

clean:  ## remove the built site, caches and grading artefacts (keeps .venv)
	rm -rf _build .pytest_cache .ruff_cache gradebook.db grades.csv submitted autograded feedback
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
