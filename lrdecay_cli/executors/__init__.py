"""Ways to run a sweep's trials. Every executor trains stacks: lists of trials that `train.train_runs`
trains as one (a stack of one is a plain run), each trial continuing from its checkpoint where it
has one. Executors differ only in where stacks run; they report each trial's start and summary
through callbacks, and the run directories they leave are the only record."""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
from collections import defaultdict
from pathlib import Path
from typing import Callable

from lrdecay_cli.choices import Executor
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import Status, mark_failed, read_summary
from lrdecay_cli.sweep import Trial, resumable

OnStart = Callable[[Trial], None]
OnDone = Callable[[Trial, dict], None]


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the sweep; `signal` (SIGINT / SIGTERM) decides the exit code."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal = signal_name


class SweepSignals:
    """A sweep's SIGTERM: while trials run it raises SweepInterrupted, the way Ctrl-C raises
    KeyboardInterrupt (a trial in flight handles both itself: it finishes its step, keeps its
    checkpoint and is resumed by --resume); once `settled` it is only noted. `stopped_by` names what
    stopped the sweep, also where a library turned the exception into a bare KeyboardInterrupt."""

    def __init__(self):
        self.received: str | None = None
        self.settled = False

    def __enter__(self) -> "SweepSignals":
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    def _handle(self, signum, frame) -> None:
        self.received = "SIGTERM"
        if not self.settled:
            raise SweepInterrupted("SIGTERM", "SIGTERM")

    def stopped_by(self, exc: KeyboardInterrupt) -> str:
        return self.received or getattr(exc, "signal", "SIGINT")


def resolve(name: Executor) -> Executor:
    """`auto`: vectorized where CUDA is (a GPU trains a stack of models about as fast as one), else sequential."""
    if name != Executor.AUTO:
        return Executor(name)
    import torch

    return Executor.VECTORIZED if torch.cuda.is_available() else Executor.SEQUENTIAL


def start_step(sweep_dir: Path, trial: Trial, name: str = "checkpoint.pt") -> int:
    """The step a trial starts from: its checkpoint's (read memory-mapped: no weights are loaded), or 0."""
    if not resumable(sweep_dir, trial):
        return 0
    import torch

    try:
        return torch.load(sweep_dir / trial.dirname / name, map_location="cpu", mmap=True, weights_only=True)["step"]
    except Exception:  # an unreadable checkpoint fails its trial when the trial runs, not here
        return -1


def settle_checkpoints(sweep_dir: Path, trials: list[Trial]) -> None:
    """Where a kill -9 stopped a stack while it replaced its members' checkpoints (train.save_checkpoints),
    some members have their new checkpoint and some the old one, and every one kept its old one: put
    the new ones back to the old, so the stack resumes as one from the same step, exactly as it was.
    Elsewhere the kept ones are dropped."""
    from lrdecay_cli.stack import stack_key

    kept = {t.index: start_step(sweep_dir, t, "checkpoint.prev.pt") for t in trials
            if (sweep_dir / t.dirname / "checkpoint.prev.pt").is_file() and resumable(sweep_dir, t)}
    current = {t.index: start_step(sweep_dir, t) for t in trials if t.index in kept}
    waiting = {(stack_key(t.spec), kept[t.index]) for t in trials if t.index in kept and current[t.index] == kept[t.index]}
    for trial in trials:
        if trial.index not in kept:
            continue
        run = sweep_dir / trial.dirname
        if current[trial.index] != kept[trial.index] and (stack_key(trial.spec), kept[trial.index]) in waiting:
            os.replace(run / "checkpoint.prev.pt", run / "checkpoint.pt")
        else:
            (run / "checkpoint.prev.pt").unlink()


def stacks(trials: list[Trial], sweep_dir: Path, parts: int = 1) -> list[list[Trial]]:
    """Trials that can train as one: the same `stack.stack_key` and starting step (a resumed trial goes
    on with those at its checkpoint). Each group is cut into `parts` near-equal stacks (one per worker)."""
    from lrdecay_cli.stack import stack_key

    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for trial in trials:
        key = stack_key(trial.spec)
        groups[(key, start_step(sweep_dir, trial)) if key else ("alone", trial.index)].append(trial)
    out = []
    for group in groups.values():
        size = math.ceil(len(group) / min(parts, len(group)))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def threads_of(name: Executor, workers: int) -> int:
    """The torch CPU threads a trial trains with under the executor `name`."""
    if name == Executor.PROCESSES:
        from lrdecay_cli.executors.processes import worker_threads

        return worker_threads(workers)
    import torch

    return torch.get_num_threads()


def check_threads(sweep_dir: Path, trials: list[Trial], threads: int) -> None:
    """Refuse, before anything runs, to continue CPU trials under another thread count than they ran
    with: they would sum in another order and end with other numbers (train.continuing says so too)."""
    counts = {summary.get("threads") for t in trials if resumable(sweep_dir, t) and t.spec.train.device != "cuda"
              for summary in [read_summary(sweep_dir / t.dirname) or {}]} - {None, threads}
    if counts:
        raise UserError(f"trials ran with {', '.join(map(str, sorted(counts)))} CPU threads and would continue "
                        f"with {threads}, which sums in another order (their numbers would differ)",
                        where=f"--resume {sweep_dir}", fix="resume with the executor and --workers they ran with, "
                                                           "or pass --force")


def run_stack(trials: list[Trial], sweep_dir: Path, force: bool = False, observer=None) -> list[dict]:
    """Train `trials` into `<sweep_dir>/<trial dir>` as one stack, each continuing from its checkpoint
    where it has one; a failure fails each of them (their checkpoints stay for --resume), never the
    sweep. A Ctrl-C or SIGTERM that interrupted them ends the sweep (SweepInterrupted)."""
    from lrdecay_cli.train import Interrupted, Planned, continuing, train_runs

    try:
        planned = []
        for trial in trials:
            if resumable(sweep_dir, trial):
                planned.append(continuing(sweep_dir / trial.dirname, force=force))
            else:  # a fresh start: clear what a start killed before its first checkpoint left
                shutil.rmtree(sweep_dir / trial.dirname, ignore_errors=True)
                planned.append(Planned(trial.spec, sweep_dir, trial.dirname))
        summaries = [result.summary for result in train_runs(planned, observer)]
    except KeyboardInterrupt:
        raise
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


def run_stacks_here(stacked: list[list[Trial]], sweep_dir: Path, on_start: OnStart, on_done: OnDone,
                    force: bool = False, observer=None) -> None:
    """Stacks one after another in this process (the sequential and vectorized executors), loading the data
    once for all; `observer` (a train.TrainObserver) sees each stack's epochs."""
    from lrdecay_cli.data import splits_kept

    with splits_kept():
        for stack in stacked:
            for trial in stack:
                on_start(trial)
            for trial, summary in zip(stack, run_stack(stack, sweep_dir, force, observer)):
                on_done(trial, summary)


def run(name: Executor, trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int = 2,
        address: str | None = None, retries: int = 0, node_ip: str | None = None, force: bool = False,
        observer=None) -> None:
    """Run `trials` with the named executor: `sequential` (one at a time), `vectorized` (stacks here),
    `processes` (stacks in worker processes), `ray` (stacks as Ray tasks), `auto` (see `resolve`).
    `observer` sees the epochs of stacks trained in this process (sequential, vectorized)."""
    name = resolve(name)
    settle_checkpoints(sweep_dir, trials)
    if not force and name != Executor.RAY:  # a Ray task checks its trials on its node
        check_threads(sweep_dir, trials, threads_of(name, workers))
    if name == Executor.SEQUENTIAL:
        run_stacks_here([[trial] for trial in trials], sweep_dir, on_start, on_done, force, observer)
    elif name == Executor.VECTORIZED:
        run_stacks_here(stacks(trials, sweep_dir), sweep_dir, on_start, on_done, force, observer)
    elif name == Executor.PROCESSES:
        from lrdecay_cli.executors.processes import run_processes

        run_processes(trials, sweep_dir, on_start, on_done, workers, retries, force)
    else:
        from lrdecay_cli.executors.ray_cluster import run_ray

        run_ray(trials, sweep_dir, on_start, on_done, address, retries, node_ip, force)
