# One-command setup: `make demo` and `make test` create .venv, install and run.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# tensorrt-stubs (NVIDIA's API surface, for mypy on the TensorRT path): outside site-packages, and without its
# dependencies (it requires tensorrt itself, which installs nowhere here; and a bare tensorrt/ folder in
# site-packages would import as an empty namespace package). .ci/trt_stubs.py makes the generated stubs parse.
TYPESTUBS := $(VENV)/typestubs
TRT_STUBS ?= tensorrt-stubs==10.13.0.35.1
# NVIDIA's cuda-python runtime (cuda-bindings; it imports without a GPU), outside site-packages: .ci/cuda_stubs.py
# writes its stub into TYPESTUBS for the cuda-python adapter's type-check.
CUDA_BINDINGS ?= cuda-bindings==13.5.0 cuda-pathfinder==1.9.1
DEMO_OUT ?= out/demo
QUICK_DIR ?= $(shell mktemp -d -t edge-geoloc-bench-XXXX 2>/dev/null || echo /tmp/edge-geoloc-bench)
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: all install demo test lint typecheck unit bench-quick clean

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the CPU build of torch first (the workstation extra's range is then satisfied)"
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[workstation,pretrained,dev,bench,mavlink]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(TYPESTUBS) $(TRT_STUBS)
	$(PY) .ci/trt_stubs.py $(TYPESTUBS)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(VENV)/cuda-bindings $(CUDA_BINDINGS)
	PYTHONPATH=$(VENV)/cuda-bindings $(PY) .ci/cuda_stubs.py $(TYPESTUBS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge-geoloc demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_geoloc tests benchmarks

# The TensorRT encoder and engine build, type-checked against tensorrt-stubs, and the cuda-python adapter against
# cuda-bindings (tests/test_tensorrt_types.py shows a misspelt or removed call fails it).
typecheck: $(STAMP)
	MYPYPATH=$(TYPESTUBS) $(PY) -m mypy --config-file .ci/mypy-tensorrt.ini

unit: $(STAMP)
	$(PY) -m pytest -q

bench-quick: $(STAMP)
	@set -e; for b in benchmarks/[!_]*.py; do \
	  name=$$(basename $$b .py); \
	  echo "== benchmark $$name --quick"; \
	  $(PY) $$b --quick --json $(QUICK_DIR)/$$name.json; \
	done

test: lint typecheck unit bench-quick

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache out
