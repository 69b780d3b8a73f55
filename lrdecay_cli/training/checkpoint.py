"""A run's checkpoint, its only writer and reader, and the rules a resume keeps: the same model, optimizer
and CPU thread count, and a stack's members continuing together from one step. A checkpoint holds all that
shapes the rest of a run, as tensors, numbers, strings and lists or dicts of them: it is loaded with
weights_only, so a crafted file cannot run code."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from lrdecay_cli.config.spec import Spec
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir.fs import write_atomic
from lrdecay_cli.rundir.layout import CHECKPOINT, CONFIG, FINISHED, KEPT_CHECKPOINT
from lrdecay_cli.rundir.read import read_summary
from lrdecay_cli.training.models import build_model

KEYS = {"epoch": int, "step": int, "spec": dict, "model": dict, "optimizer": dict, "schedule": dict, "rng": dict}


def write(run_dirs: list[Path], states: list[dict]) -> None:
    """Each run's checkpoint. A stack's members replace theirs as one: every old one is kept (as
    checkpoint.prev.pt, a hard link) until all new ones are written, so after a kill -9 in between
    every member can still start from the same step, and the stack resumes as it was (`settle`)."""
    stacked = len(run_dirs) > 1
    for path in run_dirs if stacked else ():
        drop_kept(path)
        if (path / CHECKPOINT).is_file():
            os.link(path / CHECKPOINT, path / KEPT_CHECKPOINT)
    for path, state in zip(run_dirs, states):
        write_one(path, state)
    for path in run_dirs if stacked else ():
        drop_kept(path)


def write_one(run_dir: Path, state: dict) -> None:
    write_atomic(run_dir / CHECKPOINT, lambda f: torch.save(state, f))


def drop_kept(run_dir: Path) -> None:
    (run_dir / KEPT_CHECKPOINT).unlink(missing_ok=True)


def read(path: Path) -> dict:
    """A checkpoint's state, its tensors on the CPU; a file that is not an lrdecay checkpoint is a user error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, random, empty, or a pickle with code in it
        why = (str(exc).splitlines() or [""])[0][:120]
        raise UserError(f"not a readable lrdecay checkpoint ({type(exc).__name__}{': ' + why if why else ''})",
                        where=str(path), fix="the run cannot be resumed from it; train it again") from None
    wrong = [key for key, kind in KEYS.items() if not isinstance(state, dict) or not isinstance(state.get(key), kind)]
    if wrong:
        raise UserError(f"not an lrdecay checkpoint (no valid {', '.join(wrong)})", where=str(path),
                        fix="the run cannot be resumed from it; train it again")
    return state


def step_of(path: Path) -> int:
    """The step a checkpoint was written at, read memory-mapped (no weights are loaded); -1 where it cannot
    be read (its run then fails when it starts, with `read`'s message, not here)."""
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)["step"]
    except Exception:
        return -1


@dataclass(frozen=True)
class RunState:
    """What a run directory says about continuing it (read once per run and command): its summary (None: never
    started), whether it continues from its checkpoint, and from which step (-1: the checkpoint is unreadable)."""

    summary: dict | None
    resumable: bool = False
    step: int = 0

    @property
    def threads(self) -> int | None:
        """The CPU threads it trained with, where it continues (a resume must keep them)."""
        return (self.summary or {}).get("threads") if self.resumable else None


def state_of(run_dir: Path) -> RunState:
    summary = read_summary(run_dir)
    resumable = (summary is not None and summary.get("status") not in FINISHED
                 and (run_dir / CHECKPOINT).is_file() and (run_dir / CONFIG).is_file())
    return RunState(summary, resumable, step_of(run_dir / CHECKPOINT) if resumable else 0)


def check_fits(state: dict, spec: Spec, path: Path) -> None:
    """The checkpoint can continue `spec`: the same model (every tensor's name and shape) and the
    same optimizer (its state has that optimizer's buffers); what else a --force changes, it holds."""
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in build_model(spec.model).state_dict().items()}
    held = {name: tuple(t.shape) for name, t in state["model"].items() if isinstance(t, torch.Tensor)}
    if held != shapes:
        raise UserError(f"the checkpoint holds another model than model.name={spec.model.name} "
                        f"{getattr(spec.model, 'hidden', '')}".rstrip(), where=str(path),
                        fix="resume with the run's own model; another model is a new run")
    trained = state["spec"].get("optimizer", {}).get("name")
    if trained != spec.optimizer.name:
        raise UserError(f"the checkpoint holds {trained} state, not {spec.optimizer.name}", where=str(path),
                        fix="resume with the run's own optimizer; another optimizer is a new run")


def check_threads(ran_with: Iterable[int | None], threads: int, where: str, who: str = "the run trained") -> None:
    """Refuse to continue CPU runs under another thread count than they ran with (`ran_with`; None: not
    known, or on CUDA): they would sum in another order and end with other numbers."""
    counts = set(ran_with) - {None, threads}
    if counts:
        raise UserError(f"{who} with {', '.join(map(str, sorted(counts)))} CPU threads and would continue with "
                        f"{threads}, which sums in another order (the numbers would differ)", where=where,
                        fix="resume as it ran (the same executor and --workers), or pass --force")


def settle(runs: list[tuple[Path, str | None]]) -> None:
    """Where a kill -9 stopped a stack midway through `write`, some members have their new checkpoint and some
    the old, and all kept the old: put the new ones back to the old, so the stack resumes as one from the same
    step. Elsewhere the kept ones are dropped. `runs`: each run directory with its stacked.stack_key."""
    kept = {path: step_of(path / KEPT_CHECKPOINT) for path, _ in runs
            if (path / KEPT_CHECKPOINT).is_file() and state_of(path).resumable}
    current = {path: step_of(path / CHECKPOINT) for path in kept}
    waiting = {(key, kept[path]) for path, key in runs if path in kept and current[path] == kept[path]}
    for path, key in runs:
        if path in kept and current[path] != kept[path] and (key, kept[path]) in waiting:
            os.replace(path / KEPT_CHECKPOINT, path / CHECKPOINT)
        elif path in kept:
            drop_kept(path)
