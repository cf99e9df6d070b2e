# runstream developer entry points. Fresh machine: `make demo` runs the demo, `make test` the tests.
# Every Python package comes from uv.lock (exact versions and hashes); `make lock` refreshes it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
# uv itself is bootstrapped from a hash-pinned requirements file (the same version as in uv.lock).
UV_HOME := $(CACHE)/uv
UV := $(UV_HOME)/bin/uv
# The machine's Python, never one uv would download.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
# The test and demo environment; bench adds the peers measured against (wandb, mlflow).
EXTRAS := --extra stream --extra dev --extra grafana --extra notebook --extra mlflow --extra importers
BENCH_VENV := .venv-bench
BENCH_EXTRAS := --extra stream --extra bench
# runstream.integrations' tests train tiny models with torch (about 6 GB installed): a venv of their own.
FRAMEWORKS_VENV := .venv-frameworks
FRAMEWORKS_EXTRAS := --extra stream --extra dev --extra frameworks

.PHONY: venv bench-venv frameworks-venv test-frameworks lock demo test test-fast lint bench kafka-fetch kafka-up kafka-down schemas dashboards clean

$(UV): tools/uv.requirements.txt
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install -q --disable-pip-version-check --no-deps --require-hashes -r $<
	touch $@

venv: $(VENV)/.installed

# --locked: fail, rather than re-resolve, when pyproject.toml and uv.lock disagree.
$(VENV)/.installed: pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked $(EXTRAS)
	touch $@

bench-venv: $(BENCH_VENV)/.installed

$(BENCH_VENV)/.installed: pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --locked $(BENCH_EXTRAS)
	touch $@

frameworks-venv: $(FRAMEWORKS_VENV)/.installed

$(FRAMEWORKS_VENV)/.installed: pyproject.toml uv.lock $(UV)
	UV_PROJECT_ENVIRONMENT=$(FRAMEWORKS_VENV) $(UV) sync --locked $(FRAMEWORKS_EXTRAS)
	touch $@

lock: $(UV)
	$(UV) lock

kafka-fetch:
	deploy/kafka/kafka.sh fetch

kafka-up:
	@deploy/kafka/kafka.sh up

kafka-down:
	deploy/kafka/kafka.sh down

demo: venv kafka-up
	$(BIN)/runstream demo

# The whole suite: everything in the test venv, then the framework loggers in theirs.
test: venv kafka-fetch
	$(BIN)/pytest
	$(MAKE) test-frameworks

# Lightning, transformers and Keras really training on the CPU, in their own venv (KERAS_BACKEND=torch):
# about 6 GB of wheels (torch with its CUDA libraries), 50 s to fetch here, 3 minutes of tests.
test-frameworks: frameworks-venv kafka-fetch
	KERAS_BACKEND=torch $(FRAMEWORKS_VENV)/bin/pytest tests/frameworks

# Everything that needs no Kafka broker: pure unit tests and the embedded engine, in about two minutes.
test-fast: venv
	$(BIN)/pytest -m "not kafka"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: bench-venv kafka-up
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BENCH_VENV)/bin/python $$b; done

schemas: venv
	$(BIN)/runstream schemas

# Regenerates deploy/grafana/dashboards/{team,admin}/*.json from stream/runstream_worker/dashboards.
dashboards: venv
	$(BIN)/runstream dashboards

clean:
	-deploy/kafka/kafka.sh down
	rm -rf $(VENV) $(BENCH_VENV) $(CACHE) .runstream deploy/kafka/.run
