# The two set-up commands: `make demo` and `make test`.  Each builds .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-cluster test bench venv pyc lint clean

venv: $(STAMP)

# A "compat" editable install is a plain .pth path entry: no import hook to load at every start.
PIP    := $(BIN)/pip install --quiet --disable-pip-version-check --config-settings editable_mode=compat

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[test]'
	touch $(STAMP)

# Byte-compile the packages: with PYTHONDONTWRITEBYTECODE set, every CLI call would compile them again.
pyc: $(STAMP)
	$(BIN)/python -m compileall -q queuectl_client queuectld

demo: pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo.sh

# Two nodes on one PostgreSQL (the local server, or a throwaway cluster from the installed binaries).
demo-cluster: pyc
	PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/demo-cluster.sh

# The layers (pyproject's [tool.importlinter] contracts) are checked like a test.
test: pyc
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

bench: pyc
	$(PIP) -e '.[bench]'
	$(BIN)/python bench/run.py

lint: $(STAMP)
	$(PIP) -e '.[test,dev]'
	$(BIN)/python -m ruff check queuectl_client queuectld tests
	$(BIN)/python -m mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
