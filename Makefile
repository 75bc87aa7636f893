# Herald: `make run` and `make test` are all a fresh clone needs; every target runs setup first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.herald-setup

.PHONY: setup run test lint bench chaos stack clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q -p $(BIN)/python -e '.[dev]'
	bash scripts/setup-system.sh
	touch $(STAMP)

run: setup
	$(BIN)/herald dev

stack: setup
	$(BIN)/herald stack

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.run

chaos: setup
	HERALD_CHAOS_EVENTS=10000 $(BIN)/pytest -q tests/chaos -m chaos

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
