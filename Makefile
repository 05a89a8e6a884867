# civicgate — `make run` starts everything, `make test` runs the whole suite.
# Both create what is missing first: the gateway venv (Python >= 3.11), Rasa's venv
# (Python 3.10), compiled translations, the trained model (cached by a hash of its data).
.DEFAULT_GOAL := help
SHELL := /bin/bash

GATEWAY_PYTHON ?= $(shell scripts/find-python.sh gateway)
RASA_PYTHON ?= $(shell scripts/find-python.sh 3.10)
VENV := .venv
RASA_VENV := .venv-rasa
PY := $(VENV)/bin/python

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -n "$(GATEWAY_PYTHON)" || { echo "error: no Python >= 3.11 found (set GATEWAY_PYTHON)"; exit 1; }
	$(GATEWAY_PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

$(RASA_VENV)/.installed: requirements/rasa.txt
	@test -n "$(RASA_PYTHON)" || { echo "error: Rasa 3.6 needs Python 3.10: install python3.10 or set RASA_PYTHON=/path/to/python3.10"; exit 1; }
	$(RASA_PYTHON) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install --quiet --upgrade pip wheel
	@echo "Installing Rasa 3.6.21 (about 3 minutes, 2.7 GB)..."
	$(RASA_VENV)/bin/pip install --quiet -r requirements/rasa.txt
	touch $@

translations: $(VENV)/.installed ## compile the Babel catalogs
	@$(VENV)/bin/pybabel compile --use-fuzzy -d locales -D messages --statistics 2>&1 | tail -n 3

setup: $(VENV)/.installed $(RASA_VENV)/.installed translations ## create the venvs, compile translations

model: setup ## train the Rasa model if its training data changed
	$(PY) -m bot.devstack --train-only

run: setup ## start Rasa, the reference backend and the gateway (Ctrl-C stops)
	$(PY) -m bot.devstack

browser: ## install Debian's chromium for the browser tests (if missing)
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# CIVICGATE_TEST_DB=sqlite or postgresql runs one; TEST_DATABASE_URL / TEST_REDIS_URL use
# existing servers instead of the throwaway ones scripts/with-test-services.sh starts.
TEST_DATABASES ?= $(or $(CIVICGATE_TEST_DB),sqlite postgresql)

test: setup browser ## run the whole test suite on SQLite, then on PostgreSQL (+ Redis)
	$(PY) -m bot.devstack --train-only
	scripts/with-test-services.sh bash -c 'set -e; for db in $(TEST_DATABASES); do \
	    echo "civicgate: the test suite on $$db"; \
	    CIVICGATE_TEST_DB=$$db $(PY) -m pytest -p no:cacheprovider; done'

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy bot channels service_connectors

messages: $(VENV)/.installed ## re-extract messages.pot and update the catalogs
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --sort-output --omit-header -o locales/messages.pot .
	$(VENV)/bin/pybabel update -i locales/messages.pot -d locales -D messages --no-fuzzy-matching

.PHONY: help translations setup model run browser test lint messages
