# The Quickstart targets: `make run` (main job on embedded defaults) and `make test`.
# Each one creates .venv and installs the project on first use, so both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run dev test lint format bench bench-filters bench-refresh bench-events

$(INSTALLED): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(BIN)/catalog-assets refresh

# The Dagster UI on the same defaults; instance state in .dagster_home/ (shared with `make run`).
dev: install
	mkdir -p .dagster_home && cp -n dagster.yaml .dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks (see docs/benchmarks.md); `make bench` runs all three, several minutes in all.
bench: bench-filters bench-refresh bench-events

bench-filters: install
	$(BIN)/python bench/bench_filters.py
	$(BIN)/python bench/bench_filters.py --queries 5000 --records 200000 --repeat 2 --sample-pairs 20000

bench-refresh: install
	$(BIN)/python bench/bench_refresh.py

bench-events: install
	$(BIN)/python bench/bench_events.py
