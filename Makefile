# `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python test_system.py

test: $(STAMP)
	$(BIN)/ruff format --check module_system tests benchmarks orchestrator test_system.py
	$(BIN)/ruff check module_system tests benchmarks orchestrator test_system.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the layers contract in pyproject.toml
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff format module_system tests benchmarks orchestrator test_system.py
	$(BIN)/ruff check --fix module_system tests benchmarks orchestrator test_system.py

bench: $(STAMP)  # each compares against its peer on local servers; see docs/benchmarks.md
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_s3_to_s3.py
	$(BIN)/python benchmarks/bench_ftp_to_s3.py
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_web.py

clean:
	rm -rf $(VENV) temp module_system_state.db*
