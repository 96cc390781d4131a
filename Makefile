# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Packages mypy checks (make lint, make test).
TYPED := privacy_runtime services schemas devstack privacyctl bench
#: Test workers: each runs whole files on a stack of its own (most of a test's time is waiting on
#: Kafka, PostgreSQL, SMTP or a browser, so two workers keep a 2-core machine busy). 0 runs in-process.
TEST_WORKERS ?= 2

.PHONY: run test test-fast lint bench schemas tools clean down

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

tools: $(STAMP)
	@if [ -x deploy/tools/install.sh ]; then deploy/tools/install.sh; fi

## make run: the whole system on the embedded stack (Kafka, PostgreSQL, SMTP sink), Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/python -m devstack.system

## make test: every test, on an embedded stack the suite starts and stops itself.
test: $(STAMP) tools
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --junitxml=var/junit.xml

## make lint: ruff and mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(TYPED)

## make bench: every benchmark, one table, results under bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench

## make schemas: regenerate JSON Schema files and the AsyncAPI document from the models.
schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

down: $(STAMP)
	$(BIN)/python -m devstack down --root var/stack

clean:
	rm -rf var $(VENV)
