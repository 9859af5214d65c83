# regseal developer targets. `make test` and `make demo` set up a bare machine
# themselves (apt packages, .venv) through scripts/bootstrap.sh.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test unit lint typecheck demo bench bench-quick clean

setup:
	./scripts/bootstrap.sh

lint: setup
	$(VENV)/bin/ruff check layers functions tests benchmarks
	$(VENV)/bin/ruff format --check layers functions tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest tests/unit tests/functional

test: setup lint typecheck
	$(VENV)/bin/pytest

demo: setup
	./scripts/demo.sh

# Side-by-side measurements (docs/performance.md). Several minutes and about
# 6 GiB of scratch data, deleted at the end; bench-quick is the smoke test.
bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-quick: setup
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build .aws-sam
