# runstream developer entry points. Fresh machine: `make demo` runs the demo, `make test` the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
# The compose specification's JSON Schema, as vendored (with its licence) by check-jsonschema.
# Only the data file is taken: check-jsonschema's own click pin conflicts with faust-streaming's.
CHECK_JSONSCHEMA := check-jsonschema==0.39.0
COMPOSE_SCHEMA := $(CACHE)/compose-spec.json

.PHONY: venv demo test lint bench kafka-fetch kafka-up kafka-down schemas dashboards clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[stream,dev,grafana,notebook]"
	touch $@

$(COMPOSE_SCHEMA): | venv
	mkdir -p $(CACHE)/wheels
	$(BIN)/pip download -q --no-deps --only-binary=:all: -d $(CACHE)/wheels $(CHECK_JSONSCHEMA)
	$(BIN)/python -c "import glob, sys, zipfile; \
	  z = zipfile.ZipFile(glob.glob('$(CACHE)/wheels/check_jsonschema-*.whl')[0]); \
	  sys.stdout.buffer.write(z.read('check_jsonschema/builtin_schemas/vendor/compose-spec.json'))" > $@.tmp
	mv $@.tmp $@

kafka-fetch:
	deploy/kafka/kafka.sh fetch

kafka-up:
	@deploy/kafka/kafka.sh up

kafka-down:
	deploy/kafka/kafka.sh down

demo: venv kafka-up
	$(BIN)/runstream demo

test: venv kafka-fetch $(COMPOSE_SCHEMA)
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv kafka-up
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b; done

schemas: venv
	$(BIN)/runstream schemas

# Regenerates deploy/grafana/dashboards/{team,admin}/*.json from stream/runstream_worker/dashboards.
dashboards: venv
	$(BIN)/runstream dashboards

clean:
	-deploy/kafka/kafka.sh down
	rm -rf $(VENV) $(CACHE) .runstream deploy/kafka/.run
