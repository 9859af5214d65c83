# regseal developer targets. `make test` and `make demo` set up a bare machine
# themselves (apt packages, .venv) through scripts/bootstrap.sh.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The Lambda layer (`make layer`): layers/regseal/requirements.txt installed for
# the function's platform plus the regseal package, laid out as Lambda expects
# (LAYER_DIR/python/...). ARCH is the template's Architecture parameter.
# LAYER_PLATFORM=local builds for this machine's interpreter instead, which is
# what the import test in tests/functional/test_layer_build.py runs.
ARCH ?= arm64
LAYER_DIR ?= build/layer
LAYER_PYTHON ?= 3.12
LAYER_PLATFORM ?= $(if $(filter x86_64,$(ARCH)),manylinux2014_x86_64,manylinux2014_aarch64)
ifeq ($(LAYER_PLATFORM),local)
LAYER_TARGET_FLAGS :=
else
LAYER_TARGET_FLAGS := --platform $(LAYER_PLATFORM) --python-version $(LAYER_PYTHON) \
	--implementation cp --no-compile
endif

.PHONY: setup test unit lint typecheck reliability demo bench clean layer layer-lock \
	bench-tuf bench-quick

setup:
	./scripts/bootstrap.sh

# functions/ may not exist yet on a branch; ruff fails on a missing path.
PY_SOURCES := layers tests scripts benchmarks $(wildcard functions)

lint: setup
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/cfn-lint template.yaml

# The regseal package (pyproject's [tool.mypy]), then each function's handler.
# Both handlers are modules named `app`, so each directory gets its own run.
FUNCTION_DIRS := $(wildcard functions/*)

typecheck: setup
	$(VENV)/bin/mypy
	set -e; for dir in $(FUNCTION_DIRS); do $(VENV)/bin/mypy $$dir/app.py; done

unit: setup
	$(VENV)/bin/pytest tests/unit tests/functional

test: setup lint typecheck
	$(VENV)/bin/pytest

# The reliability suites (crashes, races, bad input, tampering, leaks, load on
# the local stack); rewrites the table in docs/reliability.md.
reliability: setup
	$(PY) -m pytest -p tests.support.reliability_report \
		--reliability-report docs/reliability.md tests/reliability tests/e2e/test_load.py

demo: setup
	./scripts/demo.sh

# Side-by-side measurements (docs/performance.md). Several minutes and about
# 6 GiB of scratch data, deleted at the end; bench-quick is the smoke test.
bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: setup
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

# --no-deps: requirements.txt pins the whole closure, so nothing unpinned sneaks
# in; a missing pin shows up as an import error in the layer import test.
layer: setup
	rm -rf $(LAYER_DIR)/python
	mkdir -p $(LAYER_DIR)/python
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: --target $(LAYER_DIR)/python $(LAYER_TARGET_FLAGS) \
		-r layers/regseal/requirements.txt
	cp -R layers/regseal/regseal $(LAYER_DIR)/python/regseal
	find $(LAYER_DIR)/python -depth -name __pycache__ -type d -exec rm -rf {} +

layer-lock: setup
	$(PY) scripts/lock_layer.py

bench-tuf: setup
	$(PY) -m regseal.tuf.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build .aws-sam
