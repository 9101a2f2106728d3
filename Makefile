# ptxseg — set-up and the two entry points of the README.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ptxseg-installed
# pytest workers: both cores by default (make test PYTEST_WORKERS=0 for one process)
PYTEST_WORKERS ?= 2
# the line coverage the suite must keep (README: "Test coverage")
COVERAGE_MIN ?= 85

.PHONY: setup system-deps demo test test-fast lint bench clean

setup: $(STAMP)

# Re-install only when the dependency declarations change. TORCH=cpu: PyTorch's CPU-only build (README).
TORCH ?= default
$(STAMP): pyproject.toml constraints.txt
	@PYTHON=$(PYTHON) VENV=$(VENV) TORCH=$(TORCH) bash scripts/setup-venv.sh
	@touch $(STAMP)

# Debian programs the tests drive for real (chromium for the web viewer), installed when missing and possible.
system-deps:
	@bash scripts/system-deps.sh

demo: setup
	$(BIN)/ptxseg demo

test: setup system-deps
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --cov --cov-report=term --cov-fail-under=$(COVERAGE_MIN) $(PYTEST_ARGS)

# the developer's loop: everything but the tests marked slow (make test, and CI, still run them all)
test-fast: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/lint-imports --config .importlinter

bench: setup
	$(BIN)/python benchmarks/rle_decode.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/tune_grid.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .coverage .coverage.*
