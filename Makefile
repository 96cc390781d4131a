# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
#: Packages mypy checks (make lint, make test).
TYPED := privacy_runtime services schemas devstack privacyctl bench
#: Test workers: each runs whole files on a stack of its own. Most of a test's time is waiting on
#: Kafka, PostgreSQL, SMTP or a browser: with two, a 2-core machine's cores were about a quarter idle;
#: three keep them busier (a fresh clone's make test there: 8 min 51 s). 0 runs in-process.
TEST_WORKERS ?= 3
#: Extra pytest arguments, e.g. `make test PYTEST_ARGS=tests/consent` for one directory.
PYTEST_ARGS ?=

.PHONY: run test test-fast lint bench schemas screenshots tools clean down

#: uv installs the pinned dependencies in seconds where pip takes half a minute (same versions: every
#: dependency is pinned in pyproject.toml); pip itself stays in the venv for `pip download` (tools).
UV_VERSION := 0.9.16

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

tools: $(STAMP)
	@if [ -x deploy/tools/install.sh ]; then deploy/tools/install.sh; fi

## make run: the whole system on the embedded stack (Kafka, PostgreSQL, SMTP sink), Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/python -m devstack.system

## make test: every test, on an embedded stack the suite starts and stops itself.
## ruff and mypy (one core, ~20 s) run beside the tool installs and the tests; their verdict counts.
test: $(STAMP)
	@mkdir -p var; ( $(BIN)/ruff check . && $(BIN)/mypy $(TYPED) ) > var/lint.log 2>&1 & lint=$$!; \
	$(MAKE) --no-print-directory tools && \
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--junitxml=var/junit.xml $(PYTEST_ARGS); tests=$$?; \
	$(BIN)/python -m tests.timeline | tail -n 1; \
	wait $$lint; linted=$$?; cat var/lint.log; \
	if [ $$linted -ne 0 ]; then echo "make test: ruff or mypy failed (above)"; fi; \
	[ $$tests -eq 0 ] && [ $$linted -eq 0 ]

## make screenshots: the browser tests again, saving every page they visit under var/screenshots/.
screenshots: $(STAMP) tools
	SCREENSHOTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -m browser $(PYTEST_ARGS)

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
