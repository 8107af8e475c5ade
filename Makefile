# `make demo` and `make test` set everything up themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint format bench clean package-check constraints generated

# constraints.txt pins what CI tested; `make constraints` refreshes it after a dependency change.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@# npm tools the tests use: dclint lints compose.yaml, mermaid parses the docs' diagrams
	@# (in Chromium); without npm those two tests are skipped.
	command -v npm >/dev/null && npm install --silent --no-audit --no-fund \
	  --prefix $(VENV)/node dclint@3.1.0 mermaid@11.17.2 || echo "npm not found: tests skipped"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python test_system.py

test: $(STAMP)
	$(BIN)/ruff format --check module_system tests benchmarks orchestrator tools test_system.py
	$(BIN)/ruff check module_system tests benchmarks orchestrator tools test_system.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache  # the layers contract in pyproject.toml
	$(BIN)/pytest -q

format: $(STAMP)
	$(BIN)/ruff format module_system tests benchmarks orchestrator tools test_system.py
	$(BIN)/ruff check --fix module_system tests benchmarks orchestrator tools test_system.py

bench: $(STAMP)  # each compares against its peer on local servers; see docs/benchmarks.md
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/bench_s3_to_s3.py
	$(BIN)/python benchmarks/bench_ftp_to_s3.py
	$(BIN)/python benchmarks/bench_api.py
	$(BIN)/python benchmarks/bench_web.py

package-check: $(STAMP)  # build the wheel and sdist, install into a clean venv, run the demo
	PYTHON=$(BIN)/python .ci/package-check

generated: $(STAMP)  # registry schema, docs/cli.md, docs/configuration-reference.md
	$(BIN)/python tools/generate.py

constraints: $(STAMP)
	( sed -n '1,2p' constraints.txt; $(BIN)/pip freeze --exclude-editable ) > constraints.tmp
	mv constraints.tmp constraints.txt

clean:
	rm -rf $(VENV) temp module_system_state.db* build dist
