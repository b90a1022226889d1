# fhirbill: `make run` serves the seeded demo, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint bench install migrate seed clean migration

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/fhirbill db upgrade

seed: migrate
	$(BIN)/fhirbill seed

run: seed
	@echo "fhirbill: serving http://$(HOST):$(PORT)/fhir"
	$(BIN)/fhirbill serve --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check fhirbill tests bench wsgi.py
	$(BIN)/ruff format --check fhirbill tests bench wsgi.py
	$(BIN)/mypy fhirbill bench
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench.run

# Regenerate a migration after changing fhirbill/store/tables.py: make migration MSG="what changed"
migration: $(STAMP)
	$(BIN)/python -m fhirbill.store.migrate revision "$(MSG)"

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
