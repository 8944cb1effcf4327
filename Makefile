# Every target works from a fresh clone: `make install` builds .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo bench docs docs-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/pytest -q

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
