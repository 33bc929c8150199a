# Two entry points a fresh machine needs: `make serve` and `make test`.
# Everything installs into .venv; llama-cpp-python compiles once (~6 min), then pip's cache serves it.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: prepare-default serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Everything, including the default-model preparation and test extras (torch CPU wheel).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

prepare-default: $(STAMP)
	$(BIN)/embellama models prepare-default

serve: prepare-default
	$(BIN)/embellama serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: prepare-default lint
	$(BIN)/python -m pytest tests

bench: prepare-default
	$(BIN)/pip install -e '.[bench]'
	$(BIN)/python bench/batch_budget.py
	$(BIN)/python bench/attention.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/wrk_check.py  # needs: apt-get install wrk

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
