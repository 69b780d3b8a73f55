"""Stacks in worker processes (spawned, so each starts clean): `--workers N` at a time, one GPU each where there
are several, the CPU threads shared out so that the workers together use the cores once.

The sweep knows which stack a dead worker (killed, out of memory) was training: those trials run again from
their checkpoints, up to `retries` times, else are marked failed. A worker never outlives its sweep: the kernel
kills it when the sweep process dies (Linux `PR_SET_PDEATHSIG`; elsewhere a watchdog thread notices within a
second), and a Ctrl-C or SIGTERM of the sweep is passed on to the workers, which stop like `lrdecay train`.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import torch

from lrdecay_cli.config.sweep_file import Trial
from lrdecay_cli.experiments.executors.stacks import (OnDone, OnStart, States, SweepInterrupted, run_stack, stacks,
                                                      states_of)
from lrdecay_cli.rundir.layout import Status
from lrdecay_cli.rundir.record import mark_failed

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 60.0
"""How long interrupted workers get to finish their step and write their summaries before they are killed."""


def _die_with(parent: int) -> None:
    """Make this process end when the sweep process `parent` does, however it ends (kill -9 too)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:  # the portable fallback, and the case of a parent gone before prctl
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _interrupt(signum, frame) -> None:
    raise SweepInterrupted(signal.Signals(signum).name, signal.Signals(signum).name)


def _work(stack: list[Trial], sweep_dir: Path, states: States, results: Connection, gpu: int | None, threads: int,
          parent: int, force: bool) -> None:
    """A worker: train one stack, send back ("done", summaries) or ("interrupted", message, signal)."""
    _die_with(parent)
    for sig in (signal.SIGINT, signal.SIGTERM):  # before training starts too: a clean stop, no traceback
        signal.signal(sig, _interrupt)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before CUDA starts
    torch.set_num_threads(threads)
    try:
        results.send(("done", run_stack(stack, sweep_dir, states, force)))
    except SweepInterrupted as exc:
        results.send(("interrupted", str(exc), exc.signal))


@dataclass
class Worker:
    process: multiprocessing.process.BaseProcess
    stack: list[Trial]
    slot: int


def worker_threads(workers: int) -> int:
    """Each worker's share of the CPU threads, so that the workers together use the cores once."""
    gpus = torch.cuda.device_count()
    return max(1, (os.cpu_count() or 1) // (min(workers, gpus) if gpus > 1 else workers))


class Pool:
    """`workers` slots, each running one stack at a time in a worker process of its own."""

    def __init__(self, sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int, retries: int, force: bool):
        self.context = multiprocessing.get_context("spawn")
        self.gpus = torch.cuda.device_count()
        self.workers = min(workers, self.gpus) if self.gpus > 1 else workers
        self.sweep_dir, self.on_start, self.on_done, self.retries, self.force = sweep_dir, on_start, on_done, retries, force
        self.threads = worker_threads(self.workers)
        self.queue: deque[tuple[list[Trial], States]] = deque()
        self.attempts: Counter[int] = Counter()
        self.running: dict[Connection, Worker] = {}
        self.free = list(range(self.workers))

    def start(self, stack: list[Trial], states: States) -> None:
        for trial in stack:
            if not self.attempts[trial.index]:
                self.on_start(trial)
            self.attempts[trial.index] += 1
        reader, writer = self.context.Pipe(duplex=False)
        slot = self.free.pop(0)
        process = self.context.Process(target=_work, args=(stack, self.sweep_dir, states, writer,
                                                           slot if self.gpus > 1 else None, self.threads,
                                                           os.getpid(), self.force), daemon=True)
        process.start()
        writer.close()  # the worker holds the only writer: its end closes when it exits or dies
        self.running[reader] = Worker(process, stack, slot)

    def lost(self, worker: Worker) -> None:
        """A worker that died: its trials again (regrouped by their checkpoints) while retries last."""
        code = worker.process.exitcode
        why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        again = [t for t in worker.stack if self.attempts[t.index] <= self.retries]
        states = states_of(again, self.sweep_dir)  # read anew: the worker left them as it died
        self.queue.extendleft(reversed([(stack, states) for stack in stacks(again, states)]))
        for trial in worker.stack:
            if self.attempts[trial.index] > self.retries:
                message = f"worker process died ({why}); tried {self.attempts[trial.index]} time(s)"
                mark_failed(self.sweep_dir / trial.dirname, message, trial.spec.dump())
                self.on_done(trial, {"status": Status.FAILED, "message": message})

    def landed(self, reader: Connection) -> SweepInterrupted | None:
        """A worker's end: its summaries passed on, a lost worker's trials queued again, or its interrupt."""
        worker = self.running.pop(reader)
        try:
            message = reader.recv()
        except EOFError:
            message = None
        worker.process.join()
        self.free.append(worker.slot)
        if message is None:
            self.lost(worker)
        elif message[0] == "done":
            for trial, summary in zip(worker.stack, message[1]):
                self.on_done(trial, summary)
        else:
            return SweepInterrupted(message[1], message[2])
        return None


def run_processes(trials: list[Trial], sweep_dir: Path, states: States, on_start: OnStart, on_done: OnDone,
                  workers: int, retries: int = 0, force: bool = False) -> None:
    pool = Pool(sweep_dir, on_start, on_done, workers, retries, force)
    pool.queue.extend((stack, states) for stack in stacks(trials, states, parts=pool.workers))
    try:
        while pool.queue or pool.running:
            while pool.queue and pool.free:
                pool.start(*pool.queue.popleft())
            stopped = [s for s in map(pool.landed, wait(list(pool.running))) if s]
            if stopped:
                raise stopped[0]
    except KeyboardInterrupt as exc:
        signum = signal.SIGTERM if getattr(exc, "signal", "SIGINT") == "SIGTERM" else signal.SIGINT
        _stop(pool.running.values(), signum)
        raise
    finally:
        for worker in pool.running.values():  # a bug in this process: leave no worker behind
            if worker.process.is_alive():
                worker.process.kill()


def _stop(workers, signum: int) -> None:
    """Pass the sweep's interrupt on to its workers and wait for them to write their summaries."""
    workers = list(workers)
    for worker in workers:
        if worker.process.is_alive():
            os.kill(worker.process.pid, signum)
    deadline = time.monotonic() + STOP_GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
