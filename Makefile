# Conduit: `make dev` serves the platform locally, `make test` runs every test.
# Both set up what they need first (a Python 3.13 virtualenv with pinned packages).

SHELL := /bin/bash
export SAM_CLI_TELEMETRY := 0
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
LINT_VENV := .venv-lint
PORT ?= 3000
DEMO_SITE_PORT ?= 8765

# Python 3.13 explicitly: on these machines it is installed (pyenv) but is not
# the default python3. PYTHON313=/path/to/python3.13 overrides the search.
PYTHON313 ?= $(shell for candidate in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 \
	$$(command -v python3.13 2>/dev/null) $$(command -v python3 2>/dev/null); do \
	[ -x "$$candidate" ] && "$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null \
	&& echo "$$candidate" && break; done)

.PHONY: dev demo-site seed browser test lint lint-imports validate build openapi bench bench-goals clean help

help:
	@echo "make dev       start the local platform on http://127.0.0.1:$(PORT) (Ctrl-C stops)"
	@echo "make demo-site serve a tiny demo site on http://127.0.0.1:$(DEMO_SITE_PORT) (docs/QUICKSTART.md)"
	@echo "make seed      put a demo user, the demo site and an agent into a running make dev"
	@echo "make test      run every test"
	@echo "make lint      cfn-lint template.yaml"
	@echo "make lint-imports  the shared layer's layers (import-linter; README Architecture)"
	@echo "make validate  sam validate --lint (installs the SAM CLI in $(SAM_VENV))"
	@echo "make build     sam build (no Docker needed)"
	@echo "make openapi   regenerate functions/platform/openapi.json"
	@echo "make bench     run the benchmarks in bench/, the performance goals' table last"
	@echo "make bench-goals  only the performance goals' table (issue 22; a few minutes)"

$(VENV)/.installed: requirements-dev.txt layers/conduit/requirements.txt
	@if [ -z "$(PYTHON313)" ]; then \
		echo "error: Python 3.13 not found. Install it (e.g. 'pyenv install 3.13') or run 'make PYTHON313=/path/to/python3.13 ...'" >&2; \
		exit 1; fi
	@echo "Setting up $(VENV) with $(PYTHON313)"
	@[ -x $(PY) ] || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

# exec: the server replaces the recipe shell, so the SIGTERM make forwards reaches it directly.
# GNU make does not forward a SIGINT sent to make alone (Ctrl-C signals the whole process group,
# which works); send SIGTERM to make, or SIGINT/SIGTERM to the server's pid (in its banner).
dev: $(VENV)/.installed
	PORT=$(PORT) exec $(PY) -m shared.local

# A loopback site publishing a manifest with two tools, for the quickstart (docs/QUICKSTART.md).
demo-site: $(VENV)/.installed
	DEMO_SITE_PORT=$(DEMO_SITE_PORT) exec $(PY) -m shared.local.demo_site

# State of make dev is in memory: this puts a demo user, the demo site and an agent back into a
# running stack (the demo site must be up: make demo-site).
seed: $(VENV)/.installed
	@PORT=$(PORT) DEMO_SITE_PORT=$(DEMO_SITE_PORT) $(PY) -m shared.local.seed

# The suite lints the template too (tests/test_template.py), with the lint virtualenv.
test: $(VENV)/.installed $(LINT_VENV)/.installed tests/npm/node_modules/.installed browser
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Headless Chromium and its driver (Debian's packages) for the /docs browser test
# (tests/test_docs_page.py). Without them (no apt-get, not root) that test skips, saying so.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "Installing chromium and chromium-driver (apt-get) for the /docs browser test"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "chromium could not be installed: the /docs browser test will be skipped"; \
	else echo "chromium not installed (needs root and apt-get): the /docs browser test will be skipped"; fi

# A second MCP implementation (the TypeScript SDK's reference server) for tests/test_mcp_sites.py.
# Without Node.js the test that needs it skips, saying so.
tests/npm/node_modules/.installed: tests/npm/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tests/npm --silent --no-audit --no-fund && touch $@; \
	else echo "npm not found: the MCP test against the TypeScript reference server will be skipped"; fi

$(LINT_VENV)/.installed: requirements-lint.txt
	@[ -x $(LINT_VENV)/bin/python ] || $(PYTHON313) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet -r requirements-lint.txt
	@touch $@

lint: $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/cfn-lint template.yaml

# The shared layer's architecture (README "Architecture"): import-linter's contracts in pyproject.toml.
lint-imports: $(VENV)/.installed
	PYTHONPATH=layers/conduit $(VENV)/bin/lint-imports --no-cache

$(SAM_VENV)/.installed:
	@[ -x $(SAM_VENV)/bin/python ] || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

SAM_CLI_VERSION ?= 1.170.0

validate: $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam validate --lint --region us-east-1

# sam build needs a real python3.13 first on PATH (a pyenv shim for another version does not count).
build: $(SAM_VENV)/.installed
	PATH="$(dir $(PYTHON313)):$$PATH" $(SAM_VENV)/bin/sam build

openapi: $(VENV)/.installed
	POWERTOOLS_TRACE_DISABLED=true $(PY) -m shared.openapi

bench: $(VENV)/.installed
	$(PY) -m bench

bench-goals: $(VENV)/.installed
	$(PY) -m bench.goals

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LINT_VENV) .aws-sam .pytest_cache
