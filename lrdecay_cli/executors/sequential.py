"""One trial after another in this process: the default, and the reference the others must match."""

from __future__ import annotations

from pathlib import Path

from lrdecay_cli.executors import OnDone, OnStart, run_trial
from lrdecay_cli.sweep import Trial


def run_sequential(trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone) -> None:
    for trial in trials:
        on_start(trial)
        on_done(trial, run_trial(trial, sweep_dir))
