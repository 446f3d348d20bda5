# Tollgate developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml examples/*/pyproject.toml 2>/dev/null | sha1sum | cut -c1-12)

# The suite's settings. Its database: DATABASE_URL when set, else the PostgreSQL at
# 127.0.0.1:5432 when one answers, else an embedded one (devstack/database.py).
TEST_ENV := DEBUG=0 SECRET_KEY=test-secret-key-not-for-production ALLOWED_HOSTS='*' CONN_MAX_AGE=0 \
	SECURE_SSL_REDIRECT=0 \
	STRIPE_SECRET_KEY=sk_test_localstripe STRIPE_PUBLISHABLE_KEY=pk_test_localstripe \
	STRIPE_WEBHOOK_SECRET=whsec_test_primary,whsec_test_rotated \
	STRIPE_API_BASE=http://127.0.0.1:8420

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the commands
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
# The third-party plugin examples, each its own distribution, so their entry points are real.
	$(BIN)/python -m pip install --quiet $(patsubst %/pyproject.toml,-e %,$(wildcard examples/*/pyproject.toml))
	@rm -f $(VENV)/.installed-*
	@touch $@

.PHONY: install
install: $(STAMP) ## Create .venv and install Tollgate with its development tools

.PHONY: run
run: $(STAMP) ## Run the platform locally: embedded PostgreSQL, the development Stripe, a worker, demo data
	$(BIN)/python -m devstack.run

.PHONY: test
test: $(STAMP) ## Run the whole suite on PostgreSQL (DATABASE_URL, 127.0.0.1:5432 or embedded), with the development Stripe
	$(TEST_ENV) $(BIN)/python -m devstack.database run --for tests -- $(BIN)/python -m pytest $(PYTEST_ARGS)

.PHONY: bench
bench: $(STAMP) ## Benchmark the money path on real processes: one table, bench/results.json (BENCH_ARGS=--quick, --profile, --help)
	$(BIN)/python -m bench $(BENCH_ARGS)

.PHONY: storm
storm: $(STAMP) ## Storm test: shuffled, repeated webhooks while workers are killed; checks every money invariant (STORM_ARGS=--help)
	$(BIN)/python -m bench.storm $(STORM_ARGS)

.PHONY: lint
lint: $(STAMP) ## Check style with ruff, the layout's import rules with import-linter, the Stripe gateway's types with mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Format and fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: client
client: $(STAMP) ## Regenerate clients/typescript (schema.json, api.d.ts) from the API; needs npm
	DEBUG=1 $(BIN)/python -m platform_core.web.openapi_export clients/typescript/schema.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error \
		&& npx --no-install openapi-typescript schema.json -o api.d.ts

.PHONY: clean
clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var
