"""The Python API, for notebooks and scripts: the functions the `lrdecay` commands call, without the
printing. Bad input raises `UserError` (its `.line()` is the CLI's one-line message).

    import lrdecay_cli.api as lr

    spec = lr.load_spec("configs/quickstart.yaml", overrides=["train.epochs=2"])
    run = lr.train(spec, runs_dir="runs")                   # .path, .summary (summary.json)
    swept = lr.sweep("configs/quickstart.yaml", grid=["optimizer.lr=0.05,0.1"], seeds="2")
    runs = lr.read_runs([swept.path])                       # .config, .summary, .metrics, .lr per run
    board = lr.compare(runs, metric="val_acc")              # lrdecay compare's groups and statistics
    found = lr.study("configs/studies/decay_methods.yaml")  # .rows (study.csv), .report (report.md)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrdecay_cli.choices import CompareMetric


def load_spec(path: str | Path, overrides: list[str] = ()):
    """A validated `spec.Spec` from a YAML file and `--set`-style overrides ("train.epochs=2")."""
    from lrdecay_cli.spec import load

    return load(path, list(overrides))


def train(spec, runs_dir: str | Path = "runs", observer=None):
    """Train a spec (a `Spec`, or a path to one) into a new run directory; a `train.RunResult`."""
    from lrdecay_cli.train import train as run_training

    spec = load_spec(spec) if isinstance(spec, (str, Path)) else spec
    return run_training(spec, Path(runs_dir), observer)


def resume(run_dir: str | Path, force: bool = False, observer=None):
    """Continue an interrupted run from its last checkpoint (`lrdecay train --resume`)."""
    from lrdecay_cli.train import resume as resume_run

    return resume_run(Path(run_dir), None, force, observer)


@dataclass
class SweepResult:
    """A sweep run: its directory, results.csv's rows, the leaderboard (a `compare.Comparison`) and the
    signal that interrupted it (None where it ran to the end)."""

    path: Path
    rows: list[dict]
    board: Any
    interrupted: str | None


def sweep(path: str | Path | None = None, grid: list[str] = (), seeds: str | None = None, overrides: list[str] = (),
          name: str | None = None, runs_dir: str | Path = "runs", executor: str = "auto",
          resume: str | Path | None = None, **options) -> SweepResult:
    """Run a sweep file (or a plain spec with `grid` / `seeds`), or go on with the sweep directory `resume`;
    `options` are the executor's (workers, address, retries, node_ip, force)."""
    from lrdecay_cli import sweep as sweeps

    plan = sweeps.reopen(Path(resume)) if resume is not None else sweeps.plan(Path(path), list(grid), seeds,
                                                                              list(overrides), name)
    outcome = sweeps.execute(plan, Path(runs_dir), executor, **options)
    return SweepResult(plan.path, outcome.rows, outcome.board, outcome.interrupted)


def study(path: str | Path | None = None, runs_dir: str | Path = "runs", executor: str = "vectorized",
          resume: str | Path | None = None, **options):
    """Run a study file, or go on with the study directory `resume`; a `study.Outcome` (with .rows as in
    study.csv, .choices, .report, .path: the study directory)."""
    from lrdecay_cli import study as studies

    plan = studies.reopen(Path(resume)) if resume is not None else studies.load(Path(path))
    return studies.execute(plan, Path(runs_dir), executor, **options)


def read_runs(targets: list[str | Path]):
    """The `runs.Run`s of run and sweep directories (a sweep: its started trials), as plot and compare read them."""
    from lrdecay_cli.runs import collect

    return collect([Path(t) for t in targets])


def _as_runs(runs):
    """Runs as given, or read from the directories given in their place."""
    return read_runs(runs) if runs and isinstance(runs[0], (str, Path)) else runs


def compare(runs, metric: str = "val_acc", target: float | None = None):
    """`lrdecay compare`'s `Comparison` of runs (or of directories): groups by all but the seed, with statistics."""
    from lrdecay_cli.compare import METRICS, check_target
    from lrdecay_cli.compare import compare as comparing

    runs = _as_runs(runs)
    chosen = METRICS[CompareMetric(metric)]
    check_target(chosen, target)
    return comparing(runs, chosen, target)


def figures(runs, band: str = "minmax", log: frozenset[str] = frozenset(), x: str = "epoch"):
    """`lrdecay plot`'s matplotlib Figures (a `plot.Plots`: .figures by name), for a notebook to show."""
    from lrdecay_cli.plot import figures as build

    runs = _as_runs(runs)
    return build(runs, band=band, log=log, x=x)
