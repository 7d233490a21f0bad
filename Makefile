# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv if needed, then run the main job (camlens demo)
#   make test   set up .venv if needed, then run the test suite (not the Ray tests)
#   make test-ray   install the ray extra into .venv, then run the Ray tests (CI runs both)
# The set-up pins the CPU build of PyTorch through constraints.txt.

VENV ?= .venv
PYTHON ?= python3
OUT ?= camlens-demo

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -c constraints.txt -e ".[dev]"
	touch $@

.PHONY: setup demo test test-ray lint
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/camlens demo --out $(OUT)

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -m "not ray"

test-ray: $(VENV)/.installed
	$(VENV)/bin/pip install -c constraints.txt -e ".[ray]"
	$(VENV)/bin/python -m pytest -m ray

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
