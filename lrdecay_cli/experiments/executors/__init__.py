"""Where a sweep's trials run. Every executor trains stacks (stacks.py): `sequential` (one trial at a time) and
`vectorized` here, `processes` in worker processes, `ray` as Ray tasks; their run directories are the only record."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from lrdecay_cli.config.choices import Executor
from lrdecay_cli.config.sweep_file import Trial
from lrdecay_cli.experiments.executors.stacks import (OnDone, OnStart, States, SweepInterrupted, run_stack, stacks,
                                                      states_of)
from lrdecay_cli.training import checkpoint
from lrdecay_cli.training.data import KeptSplits
from lrdecay_cli.training.stacked import stack_key


class SweepSignals:
    """A sweep's Ctrl-C and SIGTERM: while trials run each raises SweepInterrupted (a trial in flight finishes its
    step and keeps its checkpoint); once `settled` it is only noted. Installed, not inherited: a sweep started
    with SIGINT ignored (a background job of a script, a test runner) still stops on it, as `lrdecay train` does.
    `stopped_by` names the signal also where a library turned the exception into a bare KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: str | None = None
        self.settled = False
        self.previous: dict = {}

    def __enter__(self) -> "SweepSignals":
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        if not self.settled:
            raise SweepInterrupted(self.received, self.received)

    def stopped_by(self, exc: KeyboardInterrupt) -> str:
        return self.received or getattr(exc, "signal", "SIGINT")


def resolve(name: Executor) -> Executor:
    """`auto`: vectorized where CUDA is (a GPU trains a stack of models about as fast as one), else sequential."""
    if name != Executor.AUTO:
        return Executor(name)
    return Executor.VECTORIZED if torch.cuda.is_available() else Executor.SEQUENTIAL


def threads_of(name: Executor, workers: int) -> int:
    """The torch CPU threads a trial trains with under the executor `name`."""
    if name == Executor.PROCESSES:
        from lrdecay_cli.experiments.executors.processes import worker_threads

        return worker_threads(workers)
    return torch.get_num_threads()


def run_here(stacked: list[list[Trial]], sweep_dir: Path, states: States, on_start: OnStart, on_done: OnDone,
             force: bool = False, observer=None) -> None:
    """Stacks one after another in this process, reading the data once for all; `observer` sees their epochs."""
    kept = KeptSplits()
    for stack in stacked:
        for trial in stack:
            on_start(trial)
        for trial, summary in zip(stack, run_stack(stack, sweep_dir, states, force, observer, kept)):
            on_done(trial, summary)


def run(name: Executor, trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int = 2,
        address: str | None = None, retries: int = 0, node_ip: str | None = None, force: bool = False,
        observer=None) -> None:
    """Run `trials` with the named executor, their run directories read once: settled where a stack was killed while
    replacing its checkpoints, refused (unless `force`) where they would continue under another CPU thread count."""
    name = resolve(name)
    checkpoint.settle([(sweep_dir / t.dirname, stack_key(t.spec)) for t in trials])
    states = states_of(trials, sweep_dir)
    if not force and name != Executor.RAY:  # a Ray task checks its trials on its node
        checkpoint.check_threads([states[t.index].threads for t in trials if t.spec.train.device != "cuda"],
                                 threads_of(name, workers), f"--resume {sweep_dir}", who="trials ran")
    if name in (Executor.SEQUENTIAL, Executor.VECTORIZED):
        stacked = [[trial] for trial in trials] if name == Executor.SEQUENTIAL else stacks(trials, states)
        run_here(stacked, sweep_dir, states, on_start, on_done, force, observer)
    elif name == Executor.PROCESSES:
        from lrdecay_cli.experiments.executors.processes import run_processes

        run_processes(trials, sweep_dir, states, on_start, on_done, workers, retries, force)
    else:
        from lrdecay_cli.experiments.executors.ray_cluster import run_ray

        run_ray(trials, sweep_dir, states, on_start, on_done, address, retries, node_ip, force)
