# Two set-up commands for a fresh clone: `make run` (the demo) and `make test` (the suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
CLI := $(VENV)/bin/etl-assets

.PHONY: install install-dev run test test-fast lint dev validate clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python setup.py pyproject.toml
	$(PIP) install -e .
	@touch $@

# The suite exercises the optional ClickHouse and Celery extras too.
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -e '.[dev,clickhouse,celery]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## make run: install, start the embedded PostgreSQL, seed the demo, load the latest 4 weeks.
run: $(VENV)/.installed
	$(CLI) demo seed
	$(CLI) run demo_sales --last 4

## make test: install the dev extras and run the whole suite.
test: $(VENV)/.installed-dev
	$(PY) -m pytest

## make test-fast: the tests that need no Dagster webserver or daemon, browser or Celery, on every core.
test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not services" -n auto --dist worksteal -q

## make lint: ruff over the repository and mypy over the package (CI runs both before the tests).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## make dev: the Dagster UI on http://127.0.0.1:3000 with the embedded defaults.
dev: $(VENV)/.installed
	$(CLI) dev

validate: $(VENV)/.installed
	$(CLI) validate

clean:
	rm -rf .etl_home

## make bench: the load benchmarks (about 25 minutes); writes benchmarks/RESULTS.md.
.PHONY: bench
bench: $(VENV)/.installed-dev
	$(PIP) install -e '.[bench]'
	$(PY) -m benchmarks.run
