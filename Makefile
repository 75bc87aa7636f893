# Herald: `make run` and `make test` are all a fresh clone needs; every target runs setup first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.herald-setup
WEB := consumers/api/web
BUNDLE := $(WEB)/dist/herald.js

.PHONY: setup run test lint docs bench chaos soak stack clean

setup: $(STAMP) $(BUNDLE)

$(STAMP): pyproject.toml scripts/setup-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q -p $(BIN)/python -e '.[dev]'
	bash scripts/setup-system.sh
	touch $(STAMP)

# The Node.js emitter example's npm packages (avsc, kafkajs), exactly as locked. Without npm,
# setup goes on and the Node emitter test says what is missing.
NODE_EXAMPLE := examples/node
NODE_STAMP := $(NODE_EXAMPLE)/node_modules/.package-lock.json
setup: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_EXAMPLE)/package.json $(NODE_EXAMPLE)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(NODE_EXAMPLE) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "!! setup: npm not found: cannot install $(NODE_EXAMPLE) (tests/integration/test_node_emitter.py)" >&2; fi

# The web components: npm ci (esbuild, pinned by package-lock.json), then one bundle the API serves.
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error

$(BUNDLE): $(WEB)/node_modules/.package-lock.json $(wildcard $(WEB)/src/*.js) $(WEB)/build.mjs
	cd $(WEB) && node build.mjs

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

docs: setup
	$(BIN)/mkdocs build --strict --clean --site-dir site

bench: setup
	$(BIN)/python -m bench.run

chaos: setup
	HERALD_CHAOS_EVENTS=10000 $(BIN)/pytest -q tests/chaos -m chaos

# Every fault at random on a steady stream; not in `make test`. SOAK_MINUTES=5 make soak for a short one.
SOAK_MINUTES ?= 60
soak: setup
	SOAK_MINUTES=$(SOAK_MINUTES) $(BIN)/pytest -q -p no:cacheprovider tests/chaos/test_soak.py -m soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache site
