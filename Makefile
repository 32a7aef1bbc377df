# rallypoint — every target says what it does. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: help install services demo test test-ts test-fast lint fmt bench schema clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install rallypoint with its dev extras

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,bench,otel]'
	@touch $(STAMP)

services: ## start RabbitMQ and PostgreSQL where installed but not running
	@bash scripts/services.sh

demo: install services ## run the fleet: workers, simulated agents and 1,000 tasks, then a summary
	$(VENV)/bin/rally demo

test: install test-ts ## run the whole test suite (real RabbitMQ, SQLite and PostgreSQL)
	$(PY) -m pytest

test-ts: install ## build the TypeScript SDK and run its tests (real RabbitMQ and workers)
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  cd sdk-ts && npm ci --no-audit --no-fund --loglevel=error && npm test; \
	else echo "test-ts: node/npm not found, TypeScript SDK tests skipped"; fi

test-fast: install ## run the tests not marked slow
	$(PY) -m pytest -m "not slow"

lint: install ## ruff and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: install ## format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install ## measure throughput and latency (rally bench)
	$(VENV)/bin/rally bench

schema: install ## write the JSON Schema of every message to schema/
	$(VENV)/bin/rally schema --out schema

clean: ## remove the virtualenv, caches and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
