"""Ways to run a sweep's trials. Each executor takes the pending trials and reports every trial's
start and summary through callbacks; the run directories they leave are the only record."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from pathlib import Path
from typing import Callable

from lrdecay_cli.sweep import Trial, record_failure, resumable

OnStart = Callable[[Trial], None]
OnDone = Callable[[Trial, dict], None]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the sweep; `signal` (SIGINT / SIGTERM) decides the exit code."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal = signal_name


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM ends a sweep the way Ctrl-C does, between trials too (a trial in flight handles it
    itself: it finishes its step, keeps its checkpoint and is resumed by --resume)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SweepInterrupted("SIGTERM", "SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_trial(trial: Trial, sweep_dir: Path) -> dict:
    """Train one trial into `<sweep_dir>/<trial dir>` (continuing it from its checkpoint where it was
    interrupted); any failure becomes its summary, never the sweep's end. A Ctrl-C or SIGTERM that
    interrupted the trial ends the sweep (KeyboardInterrupt), so `--resume` can pick it up."""
    from lrdecay_cli.train import resume, train

    try:
        if resumable(sweep_dir, trial):
            summary = resume(sweep_dir / trial.dirname).summary
        else:  # a fresh start: clear what a worker that died before the first checkpoint left
            shutil.rmtree(sweep_dir / trial.dirname, ignore_errors=True)
            summary = train(trial.spec, sweep_dir, dirname=trial.dirname).summary
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the trial failed; the sweep goes on
        message = f"{type(exc).__name__}: {exc}"
        record_failure(sweep_dir, trial, message)
        return {"status": "failed", "message": message}
    if summary["status"] == "interrupted":
        raise SweepInterrupted(summary["message"], summary.get("signal") or "SIGINT")
    return summary


def executor_names() -> list[str]:
    return ["sequential", "vectorized", "processes", "ray"]


def run(name: str, trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int,
        address: str | None = None, retries: int = 0) -> None:
    """Run `trials` with the named executor (modules imported on demand: they import torch)."""
    if name == "sequential":
        from lrdecay_cli.executors.sequential import run_sequential

        run_sequential(trials, sweep_dir, on_start, on_done)
    elif name == "vectorized":
        from lrdecay_cli.executors.vectorized import run_vectorized

        run_vectorized(trials, sweep_dir, on_start, on_done)
    elif name == "processes":
        from lrdecay_cli.executors.processes import run_processes

        run_processes(trials, sweep_dir, on_start, on_done, workers, retries)
    else:
        from lrdecay_cli.executors.ray_cluster import run_ray

        run_ray(trials, sweep_dir, on_start, on_done, address, retries)
