"""The writing side of a run directory: `RunDir` (its CSV rows, config and summary) and `RunRecord`, through
which every way of training writes, so every run directory has the same layout and summary fields."""

from __future__ import annotations

import json
import math
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import lrdecay_cli
from lrdecay_cli.rundir import layout
from lrdecay_cli.rundir.csvfile import check_contiguous, check_epochs, format_cell, read_csv
from lrdecay_cli.rundir.fs import make_unique_dir, write_atomic
from lrdecay_cli.rundir.layout import LR_COLUMNS, METRICS_COLUMNS, Status, utc_stamp
from lrdecay_cli.rundir.read import epoch_ends, read_lr_csv, read_summary


class RunDir:
    """One run's directory; keeps the CSV rows it has written so each flush rewrites a whole file."""

    def __init__(self, path: Path, metrics: Sequence[dict] = (), lr: Sequence[dict] = ()):
        self.path = path
        self._metrics = [",".join(METRICS_COLUMNS)] + [self._line(METRICS_COLUMNS, row) for row in metrics]
        self._lr = [",".join(LR_COLUMNS)] + [self._line(LR_COLUMNS, row) for row in lr]
        self.metrics = list(metrics)

    @staticmethod
    def _line(columns: tuple[str, ...], row: dict) -> str:
        return ",".join(format_cell(row[c]) for c in columns)

    @classmethod
    def create(cls, runs_dir: Path, name: str, now: datetime | None = None, stamped: bool = True) -> "RunDir":
        """Make `<runs_dir>/<UTC time>-<name>` (or just `<name>`) exclusively; `-2`, `-3`... where it exists."""
        return cls(make_unique_dir(runs_dir, f"{utc_stamp(now)}-{name}" if stamped else name))

    @classmethod
    def reopen(cls, path: Path, epochs: int, steps: int) -> "RunDir":
        """An existing run cut back to its checkpoint: rows past `epochs` / `steps` (written after the
        checkpoint by a run killed between the two writes) are dropped, so a resumed run counts nothing twice."""
        metrics = [r for r in read_csv(path / layout.METRICS, METRICS_COLUMNS) if r["epoch"] <= epochs]
        lr = [r for r in read_lr_csv(path) if r["step"] < steps]  # loss None: a run from before the column
        check_epochs(metrics, path / layout.METRICS, expected=epochs)
        check_contiguous(lr, "step", 0, path / layout.LR, expected=steps)
        run = cls(path, metrics, lr)
        run._flush()
        return run

    def write_config(self, text: str) -> None:
        write_atomic(self.path / layout.CONFIG, text)

    def add_rows(self, lr_rows: list[tuple[int, float, float]], metrics_rows: Sequence[dict] = ()) -> None:
        """Append one epoch's lr.csv rows (step, LR, loss; a non-finite loss as nan or inf) and its metrics rows,
        and flush both CSVs whole."""
        self._lr.extend(f"{step},{lr!r},{loss!r}" for step, lr, loss in lr_rows)
        for row in metrics_rows:
            self._metrics.append(self._line(METRICS_COLUMNS, row))
            self.metrics.append(row)
        self._flush()

    def _flush(self) -> None:
        write_atomic(self.path / layout.LR, "\n".join(self._lr) + "\n")
        write_atomic(self.path / layout.METRICS, "\n".join(self._metrics) + "\n")

    def write_summary(self, summary: dict) -> None:
        write_summary(self.path, summary)


def write_summary(path: Path, summary: dict) -> None:
    write_atomic(path / layout.SUMMARY, json.dumps(summary, indent=2) + "\n")


def mark_failed(path: Path, message: str, config: str) -> None:
    """Mark a run failed in its summary.json (made, with `config` as config.yaml, if the run died before
    writing them), keeping the rest of its directory: a later resume continues from its checkpoint."""
    path.mkdir(exist_ok=True)
    if not (path / layout.CONFIG).is_file():
        write_atomic(path / layout.CONFIG, config)
    summary = read_summary(path) or {}
    summary.update(status=Status.FAILED, message=message)
    write_summary(path, summary)


def git_revision() -> str | None:
    """The lrdecay source revision, where it runs from a git checkout."""
    root = Path(lrdecay_cli.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(device: str, device_name: str, torch_version: str, threads: int) -> dict:
    """The summary fields that say where and with what a run was made (train and find-lr alike);
    `threads`, torch's CPU threads, because a CPU run's numbers depend on them (summation order)."""
    return {"device": device, "device_name": device_name, "threads": threads, "torch": torch_version,
            "lrdecay": lrdecay_cli.__version__, "git_revision": git_revision(), "started_at": now_utc(),
            "finished_at": None}


def opening_summary(spec, origin: dict, **fields) -> dict:
    """A new run's summary.json (a training run's, or find-lr's), with its `fields` and `origin` (`provenance`)."""
    return {"status": Status.RUNNING, "message": None, "name": spec.name, "seed": spec.seed, **fields, **origin}


OUTCOME = ("best_val_acc", "best_epoch", "best_val_loss", "final_val_acc", "final_val_loss", "final_train_loss",
           "test_acc", "test_loss")
"""The summary fields a run's metrics fill in; None until they do (a resumed run folds its rows in again)."""


class RunRecord:
    """One run's evidence as it trains: its directory, summary.json, CSV rows and TensorBoard events."""

    def __init__(self, run: RunDir, summary: dict, events=None, seconds_before: float = 0.0):
        self.run, self.path, self.summary, self.events = run, run.path, summary, events
        self.train_size = summary["train_size"]
        self.start = time.perf_counter() - seconds_before  # a resumed run's seconds go on counting
        self.evaluations: list[dict] = []
        """The metrics rows of the epoch in progress so far (train.evals_per_epoch > 1), written with its end."""
        run.write_summary(summary)

    @classmethod
    def create(cls, spec, run: RunDir, steps_per_epoch: int, sizes: tuple[int, int, int], origin: dict) -> "RunRecord":
        """A new run of `spec` (a validated Spec) in the fresh directory `run`; `origin` is its `provenance`."""
        summary = opening_summary(
            spec, origin, epochs=spec.train.epochs, epochs_completed=0, steps=0, steps_per_epoch=steps_per_epoch,
            train_size=sizes[0], val_size=sizes[1], test_size=sizes[2], **dict.fromkeys(OUTCOME), wall_seconds=0.0,
            diverged=None)
        run.write_config(spec.dump())
        return cls(run, summary, _events(spec.train.tensorboard, run.path, spec.dump()))

    @classmethod
    def reopen(cls, path: Path, epoch: int, step: int, tensorboard: bool = False) -> "RunRecord":
        """An interrupted run's record, cut back to its checkpoint after `epoch` epochs and `step` steps."""
        events = _events(tensorboard, path, (path / layout.CONFIG).read_text(), first_step=step)
        run = RunDir.reopen(path, epoch, step)
        summary = read_summary(path) or {}
        summary.pop("signal", None)
        summary.update(status=Status.RUNNING, message=None, epochs_completed=epoch, steps=step, diverged=None,
                       finished_at=None, **dict.fromkeys(OUTCOME))
        for row in epoch_ends(run.metrics):
            _fold(summary, row)
        return cls(run, summary, events, run.metrics[-1]["seconds"] if run.metrics else 0.0)

    def evaluation(self, epoch: int, lr_rows: list[tuple[int, float, float]], train_loss: float, train_acc: float,
                   val_loss: float, val_acc: float) -> None:
        """A metrics row within the epoch, after `lr_rows` (its steps so far; train_loss and train_acc over
        them), kept until the epoch ends: an epoch cut short leaves none."""
        self.evaluations.append(self._row(epoch, lr_rows, train_loss, train_acc, val_loss, val_acc))

    def _row(self, epoch: int, lr_rows: list[tuple[int, float, float]], train_loss: float, train_acc: float,
             val_loss: float | None, val_acc: float | None) -> dict:
        return {"epoch": epoch, "step": lr_rows[-1][0] + 1, "lr": lr_rows[-1][1], "train_loss": train_loss,
                "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc,
                "seconds": time.perf_counter() - self.start}

    def end_epoch(self, epoch: int, lr_rows: list[tuple[int, float, float]], train_loss: float, correct: int,
                  val_loss: float | None, val_acc: float | None) -> dict:
        """Flush the epoch's rows (lr.csv's: step, LR, loss; metrics.csv's: its evaluations within it, then its
        end), events and summary; return its metrics row at its end (val cells empty without val set)."""
        row = self._row(epoch, lr_rows, train_loss, correct / self.train_size, val_loss, val_acc)
        rows, self.evaluations = [*self.evaluations, row], []
        self.run.add_rows(lr_rows, rows)
        if self.events:
            self.events.steps(lr_rows)
            for each in rows:
                self.events.epoch(each, end=each is row)
        _fold(self.summary, row)
        self.run.write_summary(self.summary)
        return row

    def diverged(self, lr_rows: list[tuple[int, float, float]], epoch: int, cause: str) -> None:
        """The last of `lr_rows` is the step whose loss (cause "loss") or gradient ("gradient") was not
        finite: keep the rows up to it, that loss as it was; the status says where."""
        step, lr, loss = lr_rows[-1]
        what = f"loss became {loss}" if cause == "loss" else f"the gradient became non-finite (loss {loss})"
        self.run.add_rows(lr_rows)
        if self.events:
            self.events.steps(lr_rows)
        self.summary.update(status=Status.DIVERGED, message=f"{what} at step {step} (epoch {epoch}, lr {lr!r})",
                            steps=step + 1, diverged={"step": step, "epoch": epoch, "lr": lr, "cause": cause,
                                                      "loss": loss if math.isfinite(loss) else str(loss)})

    def close(self, **fields) -> dict:
        """Final summary: the given fields (status, message, test metrics), wall time, finish time."""
        self.summary.update(fields, wall_seconds=time.perf_counter() - self.start, finished_at=now_utc())
        self.run.write_summary(self.summary)
        if self.events:
            self.events.close(self.summary)
        return self.summary


def _fold(summary: dict, row: dict) -> None:
    """Take a metrics row into a run's summary: its best and final metrics, epochs, steps and seconds so far."""
    val_acc, val_loss = row["val_acc"], row["val_loss"]  # None where data.val_size is 0
    if val_acc is not None and (summary["best_val_acc"] is None or val_acc > summary["best_val_acc"]):
        summary.update(best_val_acc=val_acc, best_epoch=row["epoch"])
    if val_loss is not None and (summary.get("best_val_loss") is None or val_loss < summary["best_val_loss"]):
        summary.update(best_val_loss=val_loss)
    summary.update(epochs_completed=row["epoch"], steps=row["step"], final_val_acc=val_acc, final_val_loss=val_loss,
                   final_train_loss=row["train_loss"], wall_seconds=row["seconds"])


def _events(wanted: bool, path: Path, spec_text: str, first_step: int = 0):
    """TensorBoard events where the spec asks for them (the package is an optional extra)."""
    if not wanted:
        return None
    from lrdecay_cli.rundir.tensorboard import RunEvents

    return RunEvents(path, spec_text, first_step)
