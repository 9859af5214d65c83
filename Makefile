# regseal developer targets. `make test` and `make demo` set up a bare machine
# themselves (apt packages, .venv) through scripts/bootstrap.sh.
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup test unit lint typecheck demo bench bench-tuf clean

setup:
	./scripts/bootstrap.sh

lint: setup
	$(VENV)/bin/ruff check layers functions tests
	$(VENV)/bin/ruff format --check layers functions tests

typecheck: setup
	$(VENV)/bin/mypy

unit: setup
	$(VENV)/bin/pytest tests/unit tests/functional

test: setup lint typecheck
	$(VENV)/bin/pytest

demo: setup
	./scripts/demo.sh

bench: setup
	$(PY) -m regseal.bench

bench-tuf: setup
	$(PY) -m regseal.tuf.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build .aws-sam
