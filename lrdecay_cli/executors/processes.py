"""One trial per worker process (spawned, so each starts clean); with several GPUs, one GPU per worker.

CPU threads are shared out so that the workers together use the machine's cores once.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from lrdecay_cli.executors import OnDone, OnStart, run_trial
from lrdecay_cli.sweep import Trial, record_failure


def _init_worker(devices, threads: int) -> None:
    """Runs in each new worker before torch is imported: pin its GPU and its share of CPU threads."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    import torch

    torch.set_num_threads(threads)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def run_processes(trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, workers: int) -> None:
    context = multiprocessing.get_context("spawn")
    gpus = _gpu_count()
    devices = None
    if gpus > 1:
        workers = min(workers, gpus)
        devices = context.Manager().Queue()
        for index in range(workers):
            devices.put(index)
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(devices, threads)) as pool:
        queue = list(trials)
        running = {}
        while queue or running:
            while queue and len(running) < workers:
                trial = queue.pop(0)
                on_start(trial)
                try:
                    running[pool.submit(run_trial, trial, sweep_dir)] = trial
                except BrokenProcessPool:  # an earlier worker died: what is left runs on --resume
                    for left in [trial, *queue]:
                        record_failure(sweep_dir, left, "not run: the worker pool broke")
                        on_done(left, {"status": "failed", "message": "not run: the worker pool broke"})
                    queue = []
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                try:
                    summary = future.result()
                except BrokenProcessPool as exc:
                    message = f"worker process died: {exc}"
                    record_failure(sweep_dir, trial, message)
                    summary = {"status": "failed", "message": message}
                on_done(trial, summary)
