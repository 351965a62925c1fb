# One-command setup: `make demo` and `make test` create .venv, install and run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= out/demo
QUICK_DIR ?= $(shell mktemp -d -t edge-geoloc-bench-XXXX 2>/dev/null || echo /tmp/edge-geoloc-bench)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: all install demo test lint unit bench-quick clean

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the CPU build of torch first (the workstation extra's range is then satisfied)"
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[workstation,pretrained,dev,bench,mavlink]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge-geoloc demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_geoloc tests benchmarks

unit: $(STAMP)
	$(PY) -m pytest -q

bench-quick: $(STAMP)
	@set -e; for b in benchmarks/[!_]*.py; do \
	  name=$$(basename $$b .py); \
	  echo "== benchmark $$name --quick"; \
	  $(PY) $$b --quick --json $(QUICK_DIR)/$$name.json; \
	done

test: lint unit bench-quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
