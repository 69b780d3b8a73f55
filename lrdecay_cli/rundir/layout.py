"""What lrdecay leaves on disk, named once: the files of a run, sweep and study directory, the status
vocabulary, what kind a directory is, and its *effective* status (what every command shows).

    <runs dir>/<UTC time>-<name>/            a run (train, or a sweep's trial tNNN/)
      config.yaml    the resolved spec        metrics.csv   one row per epoch
      lr.csv         one row per step         summary.json  status and results
                     (step, lr, loss)
      checkpoint.pt  state after the last finished epoch (training/checkpoint.py writes and reads it)
    <runs dir>/sweeps/<UTC time>-<name>/     sweep.yaml, t000/ t001/ ..., results.csv, leaderboard.csv
    <runs dir>/studies/<UTC time>-<name>/    study.yaml, tune/ tune-1/ ... final/ (sweeps), tuning.csv, study.csv
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path

from lrdecay_cli.rundir.fs import in_use

CONFIG, SUMMARY, METRICS, LR = "config.yaml", "summary.json", "metrics.csv", "lr.csv"
CHECKPOINT, KEPT_CHECKPOINT = "checkpoint.pt", "checkpoint.prev.pt"
"""A run's checkpoint, and the one it keeps while its stack replaces its members' (training/checkpoint.py)."""
EVENTS = "tensorboard"
"""A run's TensorBoard event files (train.tensorboard: true)."""
SWEEP, RESULTS, LEADERBOARD = "sweep.yaml", "results.csv", "leaderboard.csv"
STUDY, TUNING, STUDY_TABLE, STUDY_REPORT = "study.yaml", "tuning.csv", "study.csv", "report.md"
FIND_LR = "find_lr.csv"
PLOTS, PAGE = "plots", "report.html"
"""Where `lrdecay plot` and `lrdecay report` write by default, inside the one directory they are given."""

METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
LR_COLUMNS = ("step", "lr", "loss")
"""A step's LR as the optimizer held it, and the training loss of its batch."""
LR_COLUMNS_BEFORE_LOSS = ("step", "lr")
"""lr.csv of a run written before it had the loss column: read with the loss absent (None)."""


class Status(StrEnum):
    """A run's status in summary.json (a str: it is written and compared as the plain word)."""

    RUNNING = "running"
    COMPLETED = "completed"
    DIVERGED = "diverged"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    PENDING = "pending"
    """Not a run's own status: a sweep's results.csv says so of a trial that has not started."""


FINISHED = (Status.COMPLETED, Status.DIVERGED)
"""Outcomes that are final: a resume keeps them; anything else (running, interrupted, failed) continues."""


def effective_status(summary: dict, path: Path) -> tuple[str, str]:
    """A run's status as every command shows it, and in words: a summary that says running while no
    process holds the directory (fs.in_use) was killed, so it is interrupted, and --resume continues it."""
    state = str(summary.get("status", "unknown"))
    if state == Status.RUNNING and not in_use(path):
        return str(Status.INTERRUPTED), "interrupted (killed)"
    return state, state


def utc_stamp(now: datetime | None = None) -> str:
    """The UTC time that starts run and sweep directory names: 20261129-015200."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")


STAMP = re.compile(r"^(\d{8}-\d{6})-")
"""The UTC time that starts the name of every directory lrdecay makes in a runs directory (`utc_stamp`)."""
FIND_LR_NAME = re.compile(r"-find-lr(-\d+)?$")


def trial_dirs(sweep_dir: Path) -> list[Path]:
    """The trial directories a sweep has started (config.sweep_file.trial_dirname), in trial order."""
    return sorted(p for p in sweep_dir.glob("t[0-9][0-9][0-9]*") if p.is_dir() and p.name[1:].isdigit())


def is_sweep_dir(path: Path) -> bool:
    return (path / SWEEP).is_file()


class Kind(StrEnum):
    """What lrdecay made a directory as, told by the files that mark it (`kind_of`)."""

    RUN = "run"
    SWEEP = "sweep"
    STUDY = "study"
    FIND_LR = "find-lr"


FOLDERS = {"sweeps": Kind.SWEEP, "studies": Kind.STUDY}
"""The folders of a runs directory that hold sweeps and studies (`<runs dir>/sweeps/<UTC time>-<name>/`)."""


def kind_of(path: Path) -> Kind | None:
    """What `path` is by the files that mark it, None for none; an OSError where it cannot be read."""
    if (path / STUDY).is_file():
        return Kind.STUDY
    if is_sweep_dir(path):
        return Kind.SWEEP
    if (path / CONFIG).is_file() or (path / SUMMARY).is_file():
        return Kind.FIND_LR if (path / FIND_LR).is_file() or FIND_LR_NAME.search(path.name) else Kind.RUN
    return None
