"""A stack: trials that train as one (`training.loop.train_runs`), each from its checkpoint where it has one.
How trials group into stacks, and how one stack trains wherever an executor runs it."""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Callable

from lrdecay_cli.config.sweep_file import Trial
from lrdecay_cli.errors import Interrupted
from lrdecay_cli.rundir.layout import Status
from lrdecay_cli.rundir.record import mark_failed
from lrdecay_cli.training import checkpoint
from lrdecay_cli.training.checkpoint import RunState
from lrdecay_cli.training.data import KeptSplits
from lrdecay_cli.training.loop import Planned, continuing, train_runs
from lrdecay_cli.training.stacked import stack_key

OnStart = Callable[[Trial], None]
OnDone = Callable[[Trial, dict], None]
States = dict[int, RunState]
"""Each trial's run directory as it was when the command began (by trial index): read once, handed down."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the sweep; `signal` (SIGINT / SIGTERM) decides the exit code."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal = signal_name


def states_of(trials: list[Trial], sweep_dir: Path) -> States:
    return {trial.index: checkpoint.state_of(sweep_dir / trial.dirname) for trial in trials}


def stacks(trials: list[Trial], states: States, parts: int = 1) -> list[list[Trial]]:
    """Trials that can train as one: the same `stacked.stack_key` and starting step (a resumed trial goes
    on with those at its checkpoint). Each group is cut into `parts` near-equal stacks (one per worker)."""
    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for trial in trials:
        key = stack_key(trial.spec)
        groups[(key, states[trial.index].step) if key else ("alone", trial.index)].append(trial)
    out = []
    for group in groups.values():
        size = math.ceil(len(group) / min(parts, len(group)))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def run_stack(trials: list[Trial], sweep_dir: Path, states: States, force: bool = False, observer=None,
              kept: KeptSplits | None = None) -> list[dict]:
    """Train `trials` as one stack; a failure fails each of them (their checkpoints stay for --resume), never
    the sweep. A Ctrl-C or SIGTERM that interrupted them ends the sweep (SweepInterrupted)."""
    try:
        planned = []
        for trial in trials:
            if states[trial.index].resumable:
                planned.append(continuing(sweep_dir / trial.dirname, force=force))
            else:  # a fresh start: clear what a start killed before its first checkpoint left
                shutil.rmtree(sweep_dir / trial.dirname, ignore_errors=True)
                planned.append(Planned(trial.spec, sweep_dir, trial.dirname))
        summaries = [result.summary for result in train_runs(planned, observer, kept)]
    except Interrupted as exc:  # before the runs existed: nothing to mark, the sweep ends
        raise SweepInterrupted(str(exc), str(exc)) from None
    except Exception as exc:  # the stack failed; the sweep goes on
        message = f"{type(exc).__name__}: {exc}"
        for trial in trials:
            mark_failed(sweep_dir / trial.dirname, message, trial.spec.dump())
        return [{"status": Status.FAILED, "message": message} for _ in trials]
    for summary in summaries:
        if summary["status"] == Status.INTERRUPTED:
            raise SweepInterrupted(summary["message"], summary.get("signal") or "SIGINT")
    return summaries
