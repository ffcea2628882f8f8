# dnnsafety: two commands do everything.
#   make demo   set up (venv + Debian packages) and run the main job on the built-in dataset
#   make test   set up with dev tools, then lint, type-check and run the whole test suite
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/demo

.PHONY: demo test setup setup-dev lint typecheck pytest bench lock clean

setup:
	@scripts/setup.sh

setup-dev:
	@scripts/setup.sh dev

demo: setup
	$(BIN)/dnnsafety demo --out $(OUT)

test: setup-dev lint typecheck pytest

lint:
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest -q

bench: setup-dev
	$(BIN)/python benchmarks/run_all.py

# refresh constraints.txt (the versions setup installs) on purpose, then run `make test`
lock:
	@scripts/lock.sh

clean:
	rm -rf $(VENV) .venv-lock runs .pytest_cache .mypy_cache .ruff_cache
