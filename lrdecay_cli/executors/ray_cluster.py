"""Trials as Ray tasks on a Ray cluster (`pip install lrdecay_cli[ray]`).

Each task asks for its share of a node (1 CPU, or 1 GPU where the trial trains on CUDA), trains
into a scratch directory on whatever node runs it, and sends the run directory's files back, so
the results land in the driver's sweep directory whether or not the nodes share a file system.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lrdecay_cli.errors import UserError
from lrdecay_cli.executors import OnDone, OnStart, run_trial
from lrdecay_cli.rundir import write_atomic
from lrdecay_cli.sweep import Trial, record_failure


def run_packed(trial: Trial) -> dict:
    """On a Ray worker: train the trial in a scratch directory; return its summary and files."""
    with tempfile.TemporaryDirectory(prefix="lrdecay-") as scratch:
        summary = run_trial(trial, Path(scratch))
        run_dir = Path(scratch) / trial.dirname
        files = {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*"))
                 if p.is_file()} if run_dir.is_dir() else {}
    return {"summary": summary, "files": files}


def unpack(sweep_dir: Path, trial: Trial, files: dict[str, bytes]) -> None:
    """Write a trial's files (subdirectories such as tensorboard/ too) from a worker into the sweep
    directory, summary.json last."""
    path = sweep_dir / trial.dirname
    path.mkdir(exist_ok=True)
    for name in sorted(files, key=lambda n: n == "summary.json"):
        target = path / name
        if path.resolve() not in target.resolve().parents:
            raise ValueError(f"a worker sent a file outside its run directory: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, files[name])


def run_ray(trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone, address: str | None,
            retries: int = 0) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed", where="--executor ray",
                        fix="pip install 'lrdecay_cli[ray]', or use --executor processes") from None
    started_here = not ray.is_initialized()
    if started_here:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the internet
        local = {} if address else {"_node_ip_address": "127.0.0.1"}  # a new local instance stays on loopback
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False, **local)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot reach a Ray cluster at {address or 'a new local instance'}: {exc}",
                            where="--address", fix="check the address (ray status on the head node)") from None
    try:
        pending = {}
        for trial in trials:
            gpus = 1 if trial.spec.train.device.startswith("cuda") else 0
            task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=retries)(run_packed)  # retried if its worker dies
            on_start(trial)
            pending[task.remote(trial)] = trial
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(done)
            try:
                result = ray.get(done)
                unpack(sweep_dir, trial, result["files"])
                summary = result["summary"]
            except ray.exceptions.RayError as exc:  # the worker died or the task broke
                message = f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                record_failure(sweep_dir, trial, message)
                summary = {"status": "failed", "message": message}
            on_done(trial, summary)
    finally:
        if started_here:
            ray.shutdown()
