# autoroute — every set-up step lives here, so a fresh machine needs only Python 3.11+.
#   make run    install into .venv/ and start the proxy on 127.0.0.1:8080 (embedded defaults)
#   make test   install into .venv/ and run the tests (they start their own redis-server on a free port),
#               then the mutation check (scripts/mutate.py, tests/mutations.toml)
#   make bench  the benchmark, autoroute beside its peers (it starts its own redis-server on a free port)
#   make chaos  faults, bursts and SIGTERM against two replicas on a private Redis (scripts/chaos.py)

SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; \
	done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: install run test mutate lint tools redis-binary bench bench-smoke chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "autoroute needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,train]'
	@touch $(STAMP)

run: install
	$(BIN)/autoroute serve --host $(HOST) --port $(PORT)

# Test-only system tools, best effort: promtool (Debian package `prometheus`) checks the shipped
# Prometheus config, rules and a real scrape. Installed when this machine can (root + apt).
tools:
	@scripts/install-tools.sh

# The tests start their own redis-server on a free port (tests/support/redis_server.py) and
# stop it; they only need the binary, installed here when this machine can (root + apt).
redis-binary:
	@scripts/ensure-redis.sh --install-only

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install tools redis-binary lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(BIN)/python scripts/mutate.py --no-baseline

# The mutation check alone: each bug of tests/mutations.toml must fail one of its guard tests.
mutate: install
	$(BIN)/python scripts/mutate.py

bench: install redis-binary
	$(BIN)/python -m bench

bench-smoke: install redis-binary
	$(BIN)/python -m bench --smoke

chaos: install redis-binary
	$(BIN)/python scripts/chaos.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
