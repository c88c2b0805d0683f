# The two commands of the README's quick start: `make serve` and `make test`.
# Both set up a virtual environment in .venv first (again when pyproject.toml changes).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: serve test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/tasks serve

test: $(VENV)/.installed
	$(PY) -m pytest

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
