# Two commands on a fresh machine with nothing but Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= build/demo

.PHONY: demo test lint typecheck bench docs screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[postgres,redis]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,redis]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" DEMO_DIR="$(DEMO_DIR)" bash scripts/demo.sh

# pytest exits 5 when it collects no tests; make fails on any non-zero exit, so that fails too.
test: $(VENV)/.installed-dev
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# The screenshots of docs/ui.md, taken by the browser test.
screenshots: $(VENV)/.installed-dev
	bash scripts/ensure-chromium.sh
	FEATURE_ROLLOUT_SCREENSHOTS=docs/img $(BIN)/python -m pytest tests/browser -q

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check provider tests benchmarks scripts
	$(BIN)/mypy

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/plan_scale.py

# The documentation site, into build/site (mkdocs.yml; ADR 0011). NO_MKDOCS_2_WARNING silences
# Material's end-of-life banner, which is a notice, not a problem with these pages.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache
