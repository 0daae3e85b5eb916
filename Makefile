# revattr — everything a fresh clone needs: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE := sample
SAMPLE_EVENTS ?= 20000
DB     ?= out/revenue.duckdb
PYTEST_ARGS ?=

.PHONY: help install run sample test test-fast lint format bench clean

help:
	@echo "make run        create .venv, install, generate sample data, run the pipeline into $(DB)"
	@echo "make test       install if needed, run the whole test suite"
	@echo "make test-fast  tests not marked slow"
	@echo "make lint       ruff"
	@echo "make bench      pipeline vs DuckDB SQL reference at 1M/5M events (see bench/README.md)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

$(SAMPLE)/manifest.json: $(STAMP)
	$(BIN)/revattr generate --out $(SAMPLE) --events $(SAMPLE_EVENTS) --seed 7 --bad-rate 0.01

sample: $(SAMPLE)/manifest.json

run: sample
	rm -f $(DB) $(DB).wal
	$(BIN)/revattr run --events '$(SAMPLE)/events/*.jsonl' --reference $(SAMPLE)/reference --db $(DB)

# pytest exits 5 when it collects no test: that is not a failure of the build.
test: $(STAMP)
	$(BIN)/pytest -n 2 -q $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(BIN)/ruff check pipelines schemas tests

format: $(STAMP)
	$(BIN)/ruff format pipelines schemas tests

# Generates (once, cached in bench/data/) and measures; appends to bench/results.csv.
bench: $(STAMP)
	$(BIN)/python -m pipelines.bench

clean:
	rm -rf $(VENV) $(SAMPLE) out .pytest_cache
