"""Experiments made of runs: sweeps (sweep.py) and where their trials run (executors/), studies
(study.py), and the LR range test (find_lr.py)."""
