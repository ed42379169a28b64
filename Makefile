# sisock: two commands for a fresh machine.
#   make run   - set up .venv and run the whole stack (router, hub, example nodes)
#   make test  - set up .venv and run the test suite against a real router
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-unit lint bench clean chromium bytecode

install: $(STAMP)

$(STAMP): setup.py web/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools
	$(PY) -m pip install --quiet -e '.[test]'
	# bjdata (an optional UBJSON backend that crossbar pulls in) is built for
	# NumPy 1.x and prints a traceback in every router log; sisock never uses it
	$(PY) -m pip uninstall --quiet --yes bjdata
	cd web && npm ci --no-audit --no-fund && npm run build
	touch $(STAMP)

# Compiled bytecode of sisock's own modules. An editable install compiles
# nothing, and where PYTHONDONTWRITEBYTECODE is set (CI machines, some
# containers) Python never writes it either: every process start would
# compile sisock's sources again (about 50 ms of a data node's start).
bytecode: install
	$(PY) -m compileall -q sisock servers hub

# The dashboard's static files (web/dist), rebuilt when its sources change.
web/dist/index.html: $(STAMP) $(wildcard web/src/*)
	cd web && npm run build

# Headless Chromium for the browser tests (Debian package; Playwright's own
# browser download does not work everywhere).
chromium:
	@test -x /usr/bin/chromium || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

run: install web/dist/index.html bytecode
	$(VENV)/bin/sisock demo

test: install web/dist/index.html chromium lint bytecode
	$(PY) -m pytest

# ruff (lint and format check) over the tree and mypy over the pure core; settings in pyproject.toml
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test-unit: install
	$(PY) -m pytest -m unit

bench: install web/dist/index.html chromium bytecode
	$(PY) -m pip install --quiet -e '.[bench]'
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache web/node_modules web/dist
