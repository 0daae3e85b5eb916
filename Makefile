# revattr — everything a fresh clone needs: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE := sample
SAMPLE_EVENTS ?= 20000
DB     ?= out/revenue.duckdb
REPORTS  ?= out/reports
SHOTS    ?= out/screenshots
CHROMIUM ?= /usr/bin/chromium
SHOT_TM  ?= P-00002
SHOT_AM  ?= P-00054
CHROMIUM_FLAGS := --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
	--disable-background-networking --disable-component-update --disable-sync \
	--window-size=1240,1754
PYTEST_ARGS ?=

.PHONY: help install run sample test test-fast test-distributed run-dask lint format bench \
	bench-follow bench-restate follow-demo report-screenshots clean

help:
	@echo "make run        create .venv, install, generate sample data, run the pipeline into $(DB)"
	@echo "make test       install if needed, run the whole test suite"
	@echo "make test-fast  tests not marked slow"
	@echo "make run-dask   the Beam graph on a local dask.distributed cluster (2 worker processes)"
	@echo "make test-distributed  DaskRunner / multi-processing vs FnApiRunner vs embedded engine"
	@echo "make lint       ruff"
	@echo "make report-screenshots  render two manager reports with headless Chromium"
	@echo "make bench      pipeline vs DuckDB SQL reference at 1M/5M events (see bench/README.md)"
	@echo "make bench-follow  revattr follow at 5,000 ev/s: landing-to-visible latency, and"
	@echo "                   publication cost against history size (~5 min)"
	@echo "make bench-restate the cost of a restatement after a realignment, 1M facts (~1 min)"
	@echo "make follow-demo   30 s demo: files land, a read-only reader sees the totals grow"

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
	rm -rf $(DB) $(DB).wal $(DB).d
	$(BIN)/revattr run --events '$(SAMPLE)/events/*.jsonl' --reference $(SAMPLE)/reference --db $(DB)
	$(BIN)/revattr report --db $(DB) --out $(REPORTS)

# pytest exits 5 when it collects no test: that is not a failure of the build.
test: $(STAMP)
	$(BIN)/pytest -n 2 -q $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]

DASK_DB ?= out/revenue-dask.duckdb
run-dask: sample
	rm -rf $(DASK_DB) $(DASK_DB).wal $(DASK_DB).d
	$(BIN)/python -m pipelines.dask_local --workers 2 -- $(BIN)/revattr run --executor beam \
		--runner DaskRunner --events '$(SAMPLE)/events/*.jsonl' --reference $(SAMPLE)/reference \
		--db $(DASK_DB) -- --dask_client_address={address}

test-distributed: $(STAMP)
	$(BIN)/pytest -q tests/test_distributed_runners.py tests/test_remote_paths.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipelines schemas tests

format: $(STAMP)
	$(BIN)/ruff format pipelines schemas tests

# Generates (once, cached in bench/data/) and measures; appends to bench/results.csv.
bench: $(STAMP)
	$(BIN)/python -m pipelines.bench

# Follow mode at a steady offered rate; data cached in bench/data/follow/, a row appended
# to bench/follow_results.csv. BENCH_FOLLOW_SECONDS, _RATE, _CHECKS (on,off) override.
bench-follow: $(STAMP)
	$(BIN)/python -m pipelines.bench_follow
	$(BIN)/python -m pipelines.bench_publication

# Publishes the bench's 1M Parquet set, realigns its reference, times `revattr restate`
# and the restated queries; a row appended to bench/restate_results.csv.
bench-restate: $(STAMP)
	$(BIN)/python -m pipelines.bench_restate

# Producer, revattr follow and a read-only reader, in out/follow-demo/.
follow-demo: $(STAMP)
	$(BIN)/python -m pipelines.follow_demo

# Renders one territory-manager and one account-manager report with headless Chromium.
report-screenshots: $(STAMP)
	test -f $(REPORTS)/index.html || $(MAKE) run
	mkdir -p $(SHOTS)
	test -x $(CHROMIUM) || (apt-get update -q && apt-get install -y -q chromium)
	for page in territory_managers/$(SHOT_TM) account_managers/$(SHOT_AM); do \
	  folder=$$(dirname $$page); \
	  test -f $(REPORTS)/$$page.html || page=$$folder/$$(ls $(REPORTS)/$$folder | sed -n 's/\.html$$//p' | head -1); \
	  test -f $(REPORTS)/$$page.html || { echo "no report in $(REPORTS)/$$folder"; exit 1; }; \
	  profile=$$(mktemp -d); \
	  $(CHROMIUM) $(CHROMIUM_FLAGS) --user-data-dir=$$profile \
	    --screenshot=$(abspath $(SHOTS))/$$folder.png file://$(abspath $(REPORTS))/$$page.html \
	    2>/dev/null || exit 1; \
	  rm -rf $$profile; \
	done
	@echo "screenshots: $(SHOTS)/territory_managers.png $(SHOTS)/account_managers.png"

clean:
	rm -rf $(VENV) $(SAMPLE) out .pytest_cache
