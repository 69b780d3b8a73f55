"""The run concept: a run directory's layout, its status vocabulary, summary.json's schema, the CSV
writer and reader, and `RunRecord`, through which every way of training writes (no torch import).

    <runs dir>/<UTC time>-<name>/
      config.yaml    the resolved spec        metrics.csv   one row per epoch
      lr.csv         one row per step         summary.json  status and results
      checkpoint.pt  state after the last finished epoch (train.py writes and reads it)

Every file is replaced whole through a temporary file and a rename, so a killed run leaves
each file either at its previous complete version or at its new one, never torn.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Callable, Sequence

import lrdecay_cli
from lrdecay_cli.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
LR_COLUMNS = ("step", "lr")


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


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def check_output_file(path: Path, where: str) -> None:
    """A path lrdecay may write a file to: a new name, or a regular file (replaced), in an existing
    directory. A FIFO, a device, a directory or a symlink there is refused: replacing it would destroy
    it (as root, `--png /dev/null` would replace the device)."""
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
        kind = "a symlink" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file"
        raise UserError(f"'{path}' is {kind}; only a regular file or a new path is written", where=where,
                        fix="name a new file, or a regular file to replace")
    if not path.absolute().parent.is_dir():
        raise UserError(f"'{path.absolute().parent}' is not a directory", where=where,
                        fix="name a file in an existing directory")


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Write `content` (text, bytes, or a function writing to a binary file) to `path` via temp + rename;
    only ever in place of a regular file (check_output_file)."""
    check_output_file(path, "writing")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(runs_dir: Path, needed_bytes: int = 1 << 20) -> None:
    """Fail before any work if run directories cannot be made under `runs_dir`, or if its disk has
    less than `needed_bytes` free (nothing is created either way)."""
    probe = runs_dir.absolute()
    while not probe.exists():
        if probe.is_symlink():  # exists() follows it: a link to nowhere, or a loop of links
            raise UserError(f"'{probe}' is a symlink that leads nowhere", where=f"runs directory {runs_dir}",
                            fix="fix or remove the link, or pass --runs-dir with another directory")
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"'{probe}' is a file, not a directory", where=f"runs directory {runs_dir}",
                        fix="pass --runs-dir with a directory path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"'{probe}' is not writable", where=f"runs directory {runs_dir}",
                        fix="pass --runs-dir with a directory you can write to")
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise UserError(f"only {_megabytes(free)} free on its disk, about {_megabytes(needed_bytes)} needed",
                        where=f"runs directory {runs_dir}", fix="free some space, or pass --runs-dir on another disk")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def utc_stamp(now: datetime | None = None) -> str:
    """The UTC time that starts run and sweep directory names: 20261129-015200."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")


def make_unique_dir(parent: Path, name: str) -> Path:
    """Create `parent/name` exclusively (`-2`, `-3`... where it exists): concurrent runs never share one."""
    check_writable(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        path = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a directory for {name} in {parent}")


def read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, float | int | None]]:
    """A CSV that lrdecay wrote, as typed rows: epoch and step ints, the rest floats, empty cells None.

    A missing file is no rows. A header or row that does not fit (a torn or edited file) is a
    user error naming the file and line, never a silently shortened curve."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read it ({exc.__class__.__name__})", where=str(path), fix="check the file") from None
    if not lines:
        return []
    header = lines[0].split(",")
    if tuple(header) != columns:
        raise UserError(f"unexpected header {lines[0][:80]!r}", where=f"{path}:1",
                        fix=f"the header must be {','.join(columns)}; restore the file or rerun")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        try:
            if len(cells) != len(columns):
                raise ValueError(f"{len(cells)} cells, expected {len(columns)}")
            rows.append({name: _cell(name, cell) for name, cell in zip(columns, cells)})
        except ValueError as exc:
            raise UserError(f"torn or malformed row ({exc})", where=f"{path}:{number}",
                            fix="the file was cut or edited; resume the run (lrdecay train --resume) or rerun it") from None
    return rows


def check_contiguous(rows: list[dict], column: str, first: int, path: Path, expected: int | None = None) -> None:
    """A run's rows count `column` up from `first` by one, with no gap or repeat (and, where given,
    `expected` of them): a damaged or edited CSV is refused naming its file and line, never read as a
    shorter or broken curve."""
    for line, (row, value) in enumerate(zip(rows, range(first, first + len(rows))), start=2):
        if row[column] != value:
            raise UserError(f"{column} {row[column]} where {value} was due: rows are missing or repeated",
                            where=f"{path}:{line}", fix="the file was damaged or edited; rerun the run")
    if expected is not None and len(rows) != expected:
        raise UserError(f"{len(rows)} rows where the checkpoint needs {expected}", where=str(path),
                        fix="the file was damaged or edited; the run cannot resume exactly: rerun it")


def _cell(name: str, text: str) -> float | int | None:
    if text == "":
        if name in ("epoch", "step"):
            raise ValueError(f"empty {name}")
        return None
    return int(text) if name in ("epoch", "step") else float(text)


def _format(value) -> str:
    """CSV cell: floats in full precision (repr), so values read back bit for bit."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def to_csv(rows: list[dict]) -> str:
    """The CSV text of `rows` (columns: the first row's keys), cells as `_format` writes them: every CSV
    lrdecay writes besides a run's own two (results, leaderboard, compare --csv, find_lr.csv)."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _format(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


class RunDir:
    """One run's directory; keeps the CSV rows it has written so each flush rewrites a whole file."""

    def __init__(self, path: Path, metrics: Sequence[dict] = (), lr: Sequence[dict] = ()):
        self.path = path
        self._metrics = [",".join(METRICS_COLUMNS)] + [self._line(METRICS_COLUMNS, row) for row in metrics]
        self._lr = [",".join(LR_COLUMNS)] + [self._line(LR_COLUMNS, row) for row in lr]
        self.metrics = list(metrics)

    @staticmethod
    def _line(columns: tuple[str, ...], row: dict) -> str:
        return ",".join(_format(row[c]) for c in columns)

    @classmethod
    def create(cls, runs_dir: Path, name: str, now: datetime | None = None, stamped: bool = True) -> "RunDir":
        """Make `<runs_dir>/<UTC time>-<name>` (or just `<name>`) exclusively; `-2`, `-3`... where it exists."""
        return cls(make_unique_dir(runs_dir, f"{utc_stamp(now)}-{name}" if stamped else name))

    @classmethod
    def reopen(cls, path: Path, epochs: int, steps: int) -> "RunDir":
        """An existing run cut back to its checkpoint: rows past `epochs` / `steps` (written after the
        checkpoint by a run killed between the two writes) are dropped, so a resumed run counts nothing twice."""
        metrics = [r for r in read_csv(path / "metrics.csv", METRICS_COLUMNS) if r["epoch"] <= epochs]
        lr = [r for r in read_csv(path / "lr.csv", LR_COLUMNS) if r["step"] < steps]
        check_contiguous(metrics, "epoch", 1, path / "metrics.csv", expected=epochs)
        check_contiguous(lr, "step", 0, path / "lr.csv", expected=steps)
        run = cls(path, metrics, lr)
        run._flush()
        run.drop_kept()  # it continues from its current checkpoint: an older one its stack kept is moot
        return run

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def write_config(self, text: str) -> None:
        write_atomic(self.path / "config.yaml", text)

    def add_rows(self, lr_rows: list[tuple[int, float]], metrics_row: dict | None = None) -> None:
        """Append one epoch's LR rows (and its metrics row) and flush both CSVs whole."""
        self._lr.extend(f"{step},{lr!r}" for step, lr in lr_rows)
        if metrics_row is not None:
            self._metrics.append(self._line(METRICS_COLUMNS, metrics_row))
            self.metrics.append(metrics_row)
        self._flush()

    def _flush(self) -> None:
        write_atomic(self.path / "lr.csv", "\n".join(self._lr) + "\n")
        write_atomic(self.path / "metrics.csv", "\n".join(self._metrics) + "\n")

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")

    def write_checkpoint(self, save: Callable[[BinaryIO], None]) -> None:
        write_atomic(self.checkpoint_path, save)

    @property
    def kept_checkpoint_path(self) -> Path:
        """The checkpoint before the one being written, while a stack replaces its members' (train.py)."""
        return self.path / "checkpoint.prev.pt"

    def keep_checkpoint(self) -> None:
        """Keep the current checkpoint as checkpoint.prev.pt (a hard link: no copy) until `drop_kept`."""
        self.drop_kept()
        if self.checkpoint_path.is_file():
            os.link(self.checkpoint_path, self.kept_checkpoint_path)

    def drop_kept(self) -> None:
        self.kept_checkpoint_path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path):
    """Hold the run or sweep directory `path` for this process: another process that would work in it
    meanwhile is refused (exit 2, naming this one's PID) instead of racing it. The kernel drops the
    lock when the process ends, however it ends (kill -9 too); the lock file goes with a clean end."""
    if fcntl is None:  # not POSIX: no lock
        yield
        return
    lock = path / ".lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"in use by PID {holder}", where=str(path),
                            fix="wait for that process to finish, or stop it") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # the file at the path is the one locked (not one a finishing holder just removed)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def in_use(path: Path) -> bool:
    """True while a live process on this machine holds the run or sweep directory `path` (`locked`),
    judged by the PID its lock file names, without taking the lock: a reader never makes a writer fail.
    A directory whose summary says running but that no process holds was killed (kill -9, a crash)."""
    if fcntl is None:  # no locks here: trust the summary
        return True
    try:
        text = (path / ".lock").read_text()
    except OSError:  # none: the holder ended cleanly, or there never was one
        return False
    try:
        pid = int(text)
        if pid <= 0:  # not a PID `locked` writes (0 and -1 would ask about whole process groups)
            return True
        os.kill(pid, 0)
    except (ValueError, OverflowError):  # empty: a holder writing its PID this instant; or not a PID
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_summary(path: Path) -> dict | None:
    """A run directory's summary.json, or None where there is none (never started) or it does not parse."""
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def summary_number(value) -> float | None:
    """A metric read from a summary: a finite number, else None (null, a torn or crafted value, a bool)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def mark_failed(path: Path, message: str, config: str) -> None:
    """Mark a run failed in its summary.json (made, with its `config` text as config.yaml, if the run died
    before writing them), keeping whatever else its directory holds: a later resume continues from its
    checkpoint, and `plot` and `compare` read it as a failed run."""
    path.mkdir(exist_ok=True)
    if not (path / "config.yaml").is_file():
        write_atomic(path / "config.yaml", config)
    summary = read_summary(path) or {}
    summary.update(status=Status.FAILED, message=message)
    write_atomic(path / "summary.json", json.dumps(summary, indent=2) + "\n")


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


class RunRecord:
    """One run's evidence as it trains: its directory, summary.json, CSV rows and, where the spec asks
    for them, TensorBoard events. Every way of training writes through it, so every run directory has
    the same layout and summary fields."""

    def __init__(self, run: RunDir, summary: dict, events=None, seconds_before: float = 0.0):
        self.run, self.path, self.summary, self.events = run, run.path, summary, events
        self.train_size = summary["train_size"]
        self.start = time.perf_counter() - seconds_before  # a resumed run's seconds go on counting
        run.write_summary(summary)

    @classmethod
    def create(cls, spec, run: RunDir, steps_per_epoch: int, sizes: tuple[int, int, int], origin: dict) -> "RunRecord":
        """A new run of `spec` (a validated Spec) in the fresh directory `run`; `origin` is its `provenance`."""
        summary = {
            "status": Status.RUNNING, "message": None, "name": spec.name, "seed": spec.seed,
            "epochs": spec.train.epochs, "epochs_completed": 0, "steps": 0, "steps_per_epoch": steps_per_epoch,
            "train_size": sizes[0], "val_size": sizes[1], "test_size": sizes[2],
            "best_val_acc": None, "best_epoch": None, "best_val_loss": None, "final_val_acc": None, "final_val_loss": None,
            "final_train_loss": None, "test_acc": None, "test_loss": None, "wall_seconds": 0.0,
            **origin, "diverged": None,
        }
        run.write_config(spec.dump())
        return cls(run, summary, _events(spec.train.tensorboard, run.path, spec.dump()))

    @classmethod
    def reopen(cls, path: Path, epoch: int, step: int, tensorboard: bool = False) -> "RunRecord":
        """An interrupted run's record, cut back to its checkpoint after `epoch` epochs and `step` steps."""
        events = _events(tensorboard, path, (path / "config.yaml").read_text(), first_step=step)
        run = RunDir.reopen(path, epoch, step)
        summary = read_summary(path) or {}
        summary.pop("signal", None)
        rows = run.metrics
        validated = [r for r in rows if r["val_acc"] is not None]  # none where data.val_size is 0
        best = max(validated, key=lambda r: r["val_acc"], default=None)
        last = rows[-1] if rows else None
        summary.update(
            status=Status.RUNNING, message=None, epochs_completed=epoch, steps=step, diverged=None,
            test_acc=None, test_loss=None, finished_at=None,
            best_val_acc=best and best["val_acc"], best_epoch=best and best["epoch"],
            best_val_loss=min((r["val_loss"] for r in validated), default=None),
            final_val_acc=last and last["val_acc"], final_val_loss=last and last["val_loss"],
            final_train_loss=last and last["train_loss"])
        return cls(run, summary, events, last["seconds"] if last else 0.0)

    def end_epoch(self, epoch: int, lr_rows: list[tuple[int, float]], step_losses: list[float], train_loss: float,
                  correct: int, val_loss: float | None, val_acc: float | None) -> dict:
        """Flush the epoch's rows (`step_losses`: the loss of each of its steps), events and summary;
        return its metrics row. Without a validation set (None) the val cells stay empty and the val fields None."""
        row = {"epoch": epoch, "step": lr_rows[-1][0] + 1, "lr": lr_rows[-1][1], "train_loss": train_loss,
               "train_acc": correct / self.train_size, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": time.perf_counter() - self.start}
        self.run.add_rows(lr_rows, row)
        if self.events:
            self.events.steps(lr_rows, step_losses)
            self.events.epoch(row)
        if val_acc is not None and (self.summary["best_val_acc"] is None or val_acc > self.summary["best_val_acc"]):
            self.summary.update(best_val_acc=val_acc, best_epoch=epoch)
        if val_loss is not None and (self.summary.get("best_val_loss") is None or val_loss < self.summary["best_val_loss"]):
            self.summary.update(best_val_loss=val_loss)
        self.summary.update(epochs_completed=epoch, steps=row["step"], final_val_acc=val_acc, final_val_loss=val_loss,
                            final_train_loss=train_loss, wall_seconds=row["seconds"])
        self.run.write_summary(self.summary)
        return row

    def diverged(self, lr_rows: list[tuple[int, float]], step_losses: list[float], epoch: int, loss: float,
                 cause: str) -> None:
        """The last of `lr_rows` is the step whose loss (cause "loss") or gradient ("gradient") was not
        finite: keep the rows up to it; the status says where."""
        step, lr = lr_rows[-1]
        what = f"loss became {loss}" if cause == "loss" else f"the gradient became non-finite (loss {loss})"
        self.run.add_rows(lr_rows)
        if self.events:
            self.events.steps(lr_rows, step_losses[:len(lr_rows)])
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


def _events(wanted: bool, path: Path, spec_text: str, first_step: int = 0):
    """TensorBoard events where the spec asks for them (the package is an optional extra)."""
    if not wanted:
        return None
    from lrdecay_cli.tensorboard import RunEvents

    return RunEvents(path, spec_text, first_step)
