# The two commands of the README are `make run` and `make test`; the rest are their parts.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install system-deps lint typecheck pytest demo bench bench-quick bench-c1 bench-stream bench-kb clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# Export the embedding model for ONNX Runtime once (var/models), so no worker pays for it.
	$(BIN)/assist-kb prepare-model
	touch $@

install: $(VENV)/.installed

## Run the whole system on embedded defaults and play a demo trigger.
run: install
	$(BIN)/python scripts/dev.py

## Lint, type-check and run every test (unit, integration, end-to-end, browser).
test: install system-deps lint typecheck pytest

## Debian's chromium for the browser tests (installed only when missing; needs root).
system-deps:
	bash scripts/install-system-deps.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

## Play the demo trigger against a system that is already running.
demo: install
	$(BIN)/python scripts/dev.py --demo-only

## Every benchmark, one table of issue 8's targets (about 15 minutes; benchmarks/README.md).
bench: install
	$(BIN)/python benchmarks/suite.py

bench-quick: install
	$(BIN)/python benchmarks/suite.py --quick

## The C1 benchmarks alone, with their detailed tables (what `make bench` ran before the suite).
bench-c1: install
	$(BIN)/python benchmarks/run.py

bench-stream: install
	$(BIN)/python benchmarks/stream.py

bench-kb: install
	$(BIN)/python benchmarks/kb.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
