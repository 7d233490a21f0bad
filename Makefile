# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv if needed, then run the main job (camlens demo)
#   make test   set up .venv if needed, then run the test suite
# The set-up pins the CPU build of PyTorch through constraints.txt.

VENV ?= .venv
PYTHON ?= python3
OUT ?= camlens-demo

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: setup demo test lint
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/camlens demo --out $(OUT)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
