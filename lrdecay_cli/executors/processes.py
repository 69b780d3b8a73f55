"""One trial per worker process (spawned, so each starts clean); with several GPUs, one GPU per worker.

CPU threads are shared out so that the workers together use the machine's cores once. A worker
that dies (killed, out of memory) breaks the pool: the trials it may have been running are retried
in a fresh pool up to `retries` times (continuing from their checkpoints), else marked failed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from lrdecay_cli.executors import OnDone, OnStart, run_trial
from lrdecay_cli.rundir import mark_failed
from lrdecay_cli.sweep import Trial


def _init_worker(devices, threads: int) -> None:
    """Runs in each new worker before torch is imported: pin its GPU and its share of CPU threads."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    import torch

    torch.set_num_threads(threads)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def run_processes(trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int,
                  retries: int = 0) -> None:
    context = multiprocessing.get_context("spawn")
    gpus = _gpu_count()
    if gpus > 1:
        workers = min(workers, gpus)
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = deque(trials)
    attempts: Counter[int] = Counter()

    def lost(trial: Trial, why: str) -> None:
        """A trial whose worker died: again in a fresh pool while retries last, else failed."""
        if attempts[trial.index] <= retries:
            queue.appendleft(trial)
        else:
            message = f"worker process died ({why}); tried {attempts[trial.index]} time(s)"
            mark_failed(sweep_dir / trial.dirname, message)
            on_done(trial, {"status": "failed", "message": message})

    while queue:
        devices = None
        if gpus > 1:
            devices = context.Manager().Queue()
            for index in range(workers):
                devices.put(index)
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(devices, threads)) as pool:
            running: dict = {}
            broken = False
            while (queue or running) and not broken:
                while queue and len(running) < workers and not broken:
                    trial = queue.popleft()
                    if not attempts[trial.index]:
                        on_start(trial)
                    attempts[trial.index] += 1
                    try:
                        running[pool.submit(run_trial, trial, sweep_dir)] = trial
                    except BrokenProcessPool:
                        attempts[trial.index] -= 1
                        queue.appendleft(trial)
                        broken = True
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    trial = running.pop(future)
                    try:
                        on_done(trial, future.result())
                    except BrokenProcessPool as exc:
                        broken = True
                        lost(trial, str(exc) or "pool broken")
            for future, trial in running.items():  # the pool broke under them too
                try:
                    on_done(trial, future.result())
                except BrokenProcessPool as exc:
                    lost(trial, str(exc) or "pool broken")
