# Two entry points for a new user: `make demo` and `make test`. Each builds the
# virtual environment first if it is missing or older than pyproject.toml.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
# Machines here list local wheel folders that may be absent; pip's complaints about them are noise.
QUIET := 2>&1 | sed '/neither a file nor a directory/d'
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-browser chromium bench venv clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip $(QUIET)
	# The CPU wheel of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0 $(QUIET)
	$(BIN)/pip install -q -e ".[dev]" $(QUIET)
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/workbench demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The code's own health: lint, format, and the layers contract in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The quickstart in JupyterLab and headless Chromium (also part of `make test`); screenshot in tests/artifacts/.
test-browser: $(STAMP) chromium
	$(BIN)/python -m pytest -q tests/notebooks/test_browser.py

# Debian's Chromium, for the browser test and for PNG figures (kaleido). Playwright never downloads one.
chromium:
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium; }

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
