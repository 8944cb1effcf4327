# Every target works from a fresh clone: `make install` builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-e2e test-thorough lint format demo bench docs docs-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# Two tiers, split by the `e2e` marker each end-to-end module sets (`pytestmark`):
# test-fast, the unit and virtual-time tests (well under a minute), and test-e2e, the CLI
# run as a process against the simulator, real nginx and Redis servers, the fault suite
# and the benchmarks' smoke run. `make test` runs both, and measures coverage over the two
# (the CLI processes the e2e tests start included: coverage's `patch = ["subprocess"]`);
# it fails under fail_under in pyproject.toml. (A CLI process a test kills with SIGKILL
# while it writes its coverage data leaves a file coverage warns it cannot read; `coverage
# erase` clears it.) The e2e tests mostly wait on processes and servers, so two
# pytest-xdist workers halve the tier's time on two cores.
FAST := -m "not e2e"
E2E := -m e2e -n 2
COV := --cov --cov-report= --cov-fail-under=0

test: $(STAMP)
	$(BIN)/coverage erase
	$(BIN)/pytest -q $(FAST) $(COV)
	$(BIN)/pytest -q $(E2E) $(COV) --cov-append
	$(BIN)/coverage report

test-fast: $(STAMP)
	$(BIN)/pytest -q $(FAST)

test-e2e: $(STAMP)
	$(BIN)/pytest -q $(E2E)

# The fast tier with hypothesis's "thorough" profile (tests/conftest.py): ten times the examples.
test-thorough: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -q $(FAST)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(STAMP)
	$(BIN)/async-poller demo

# docs/cli.md, the CLI reference, is generated from every command's --help.
docs: $(STAMP)
	$(BIN)/python -m tools.clidocs

docs-check: $(STAMP)
	$(BIN)/python -m tools.clidocs --check

bench: $(STAMP)
	$(BIN)/python -m bench
	mkdir -p bench/results && $(BIN)/python -m bench.bound > bench/results/bound.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.*
