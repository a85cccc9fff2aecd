# The Quickstart targets: `make run` (main job on embedded defaults) and `make test`.
# Each one creates .venv and installs the project on first use, so both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install run dev test lint format check-defs deploy-local bench bench-filters bench-refresh bench-events bench-partitions bench-scale bench-query-lane

$(INSTALLED): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,k8s]'
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(BIN)/catalog-assets refresh

# The Dagster UI on the same defaults; instance state in .dagster_home/ (shared with `make run`).
# The instance file is copied on every start, so edits to dagster.yaml take effect. `dagster dev`
# runs in .dagster_home/, its DAGSTER_HOME: from the repository root it would warn that the
# root's dagster.yaml is not used (its copy is). Relative paths in CATALOG_STORE_URL (default
# data/catalog.duckdb, as for `make run`), SAMPLE_CONTENT_PATH and CATALOG_QUERIES_PATH are
# therefore made absolute first. `dagster dev` also says to use `dg dev`, which this project
# does not install: that one warning is filtered.
dev: install
	install -D -m 644 dagster.yaml .dagster_home/dagster.yaml
	abs() { case "$$1" in ""|/*) printf '%s' "$$1" ;; *) printf '%s/%s' "$(CURDIR)" "$$1" ;; esac; }; \
	store="$${CATALOG_STORE_URL:-duckdb:///data/catalog.duckdb}"; \
	case "$$store" in duckdb:///:memory:) ;; duckdb:///*) store="duckdb:///$$(abs "$${store#duckdb:///}")" ;; esac; \
	cd .dagster_home && \
	DAGSTER_HOME="$(CURDIR)/.dagster_home" CATALOG_STORE_URL="$$store" \
	SAMPLE_CONTENT_PATH="$$(abs "$$SAMPLE_CONTENT_PATH")" \
	CATALOG_QUERIES_PATH="$$(abs "$$CATALOG_QUERIES_PATH")" \
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
	"$(abspath $(BIN))/dagster" dev -w "$(CURDIR)/workspace.yaml" -h 127.0.0.1 -p 3000

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# `dg check defs`: the definitions load and validate ([tool.dg] in pyproject.toml). VIRTUAL_ENV
# tells dg which environment is the project's, as an activated .venv would.
check-defs: install
	VIRTUAL_ENV="$(abspath $(VENV))" $(BIN)/dg check defs

# The production topology on this machine (docs/deployment.md): PostgreSQL, a local Kafka-compatible
# broker, `dagster code-server start`, dagster-webserver and dagster-daemon on deploy/dagster.yaml,
# the webserver at the URL it prints; Ctrl-C stops everything. Needs the PostgreSQL server binaries.
deploy-local: install
	$(BIN)/python -m catalog_assets_tests.support.topology

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Benchmarks (see docs/benchmarks.md); `make bench` runs them all, several minutes in all.
bench: bench-filters bench-refresh bench-events bench-partitions bench-query-lane

bench-filters: install
	$(BIN)/python bench/bench_filters.py
	$(BIN)/python bench/bench_filters.py --queries 1000 --records 50000 --repeat 3 --sample-pairs 20000
	$(BIN)/python bench/bench_filters.py --queries 2500 --records 100000 --repeat 3 --sample-pairs 20000
	$(BIN)/python bench/bench_filters.py --queries 5000 --records 200000 --repeat 2 --sample-pairs 20000

bench-refresh: install
	$(BIN)/python bench/bench_refresh.py

bench-events: install
	$(BIN)/python bench/bench_events.py
	$(BIN)/python bench/bench_event_apply.py

bench-partitions: install
	$(BIN)/python bench/bench_partitions.py

# The query lane: a catalog query edited in the listing until its pairs are in the store
# (200,000 records on PostgreSQL, the daemon and a code server, the sensor's default interval).
bench-query-lane: install
	$(BIN)/python bench/bench_query_lane.py

# Production scale (issue 12): full_refresh runs via `dagster job execute` (a run in its own
# process) on PostgreSQL for the store and the instance, 200,000 documents served by the local
# course-discovery server x 5,000 catalog queries, first and no-change refresh, plus the cost
# curve at 50,000 x 1,000 and 100,000 x 2,500. Not part of `make bench` (nor `make test`): it
# takes tens of minutes and several GiB of RAM, so it is run on its own, on a quiet machine.
bench-scale: install
	$(BIN)/python bench/bench_scale.py
