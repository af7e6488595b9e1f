# Two commands: `make run` and `make test`. Both set everything up from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= config.yaml

.PHONY: install run test test-long lint typecheck bench fakes clean

# every extra (charts, parquet, apprise) as well as the dev tools: `make run` and `make test` use them all
$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,charts,parquet,apprise]'
	@touch $(STAMP)

install: $(STAMP)

## run the service on config.yaml (SQLite at data/monitor.db by default)
run: install
	$(BIN)/monitor init-db --config $(CONFIG)
	$(BIN)/monitor run --config $(CONFIG)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

## ruff, mypy --strict on monitor/, and pytest on SQLite and PostgreSQL
test: install lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

## the long forms (soak and full-size runs), kept out of `make test`
test-long: install
	$(BIN)/pytest -q -p no:cacheprovider -m long

## benchmarks print figures; the last line of each is a JSON object
## (run as modules from the repository root: collect.py uses the fakes in tests/)
bench: install
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.sentiment_groundtruth
	$(BIN)/python -m benchmarks.collect
	$(BIN)/python -m benchmarks.nab --tweets ../shared/data/nab_realtweets --other ../shared/data/nab_other
	$(BIN)/python -m benchmarks.lowcount
	$(BIN)/python -m benchmarks.query
	$(BIN)/python -m benchmarks.shifts
	$(BIN)/python -m benchmarks.backtest
	$(BIN)/python -m benchmarks.soak --minutes 10
	$(BIN)/python -m benchmarks.cluster

## fake Mastodon, Bluesky and Jetstream servers on 127.0.0.1, for trying `make run` offline
fakes: install
	$(BIN)/python -m tests.fakes

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
