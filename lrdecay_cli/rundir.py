"""The run directory: its layout, exclusive creation and atomic writes (no torch import).

    <runs dir>/<UTC time>-<name>/
      config.yaml    the resolved spec        metrics.csv   one row per epoch
      lr.csv         one row per step         summary.json  status and results
      checkpoint.pt  state after the last finished epoch

Every file is replaced whole through a temporary file and a rename, so a killed run leaves
each file either at its previous complete version or at its new one, never torn.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Callable

from lrdecay_cli.errors import UserError

METRICS_COLUMNS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
LR_COLUMNS = ("step", "lr")


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Write `content` (text, bytes, or a function writing to a binary file) to `path` via temp + rename."""
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


def _rows(path: Path) -> list[str]:
    """A CSV's data lines, without the header and without a last line torn by a kill."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return []
    width = len(lines[0].split(",")) if lines else 0
    return [line for line in lines if line and len(line.split(",")) == width and "" not in line.split(",")[:1]]


def _int_cell(line: str) -> int:
    try:
        return int(line.split(",")[0])
    except ValueError:
        return 1 << 62


def _format(value) -> str:
    """CSV cell: floats in full precision (repr), so values read back bit for bit."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


class RunDir:
    """One run's directory; keeps the CSV rows it has written so each flush rewrites a whole file."""

    def __init__(self, path: Path):
        self.path = path
        self._metrics = [",".join(METRICS_COLUMNS)]
        self._lr = [",".join(LR_COLUMNS)]

    @classmethod
    def create(cls, runs_dir: Path, name: str, now: datetime | None = None, stamped: bool = True) -> "RunDir":
        """Make `<runs_dir>/<UTC time>-<name>` (or just `<name>`) exclusively; `-2`, `-3`... where it exists."""
        return cls(make_unique_dir(runs_dir, f"{utc_stamp(now)}-{name}" if stamped else name))

    @classmethod
    def reopen(cls, path: Path, epochs: int, steps: int) -> "RunDir":
        """An existing run cut back to its checkpoint: rows past `epochs` / `steps` (written after the
        checkpoint, or torn by a kill) are dropped, so a resumed run counts nothing twice."""
        run = cls(path)
        run._metrics += [line for line in _rows(path / "metrics.csv") if _int_cell(line) <= epochs]
        run._lr += [line for line in _rows(path / "lr.csv") if _int_cell(line) < steps]
        write_atomic(path / "lr.csv", "\n".join(run._lr) + "\n")
        write_atomic(path / "metrics.csv", "\n".join(run._metrics) + "\n")
        return run

    def metrics_rows(self) -> list[dict]:
        """The metrics rows kept so far, as floats (epoch and step as ints)."""
        rows = []
        for line in self._metrics[1:]:
            cells = dict(zip(METRICS_COLUMNS, line.split(",")))
            rows.append({k: (int(v) if k in ("epoch", "step") else float(v)) for k, v in cells.items()})
        return rows

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def write_config(self, text: str) -> None:
        write_atomic(self.path / "config.yaml", text)

    def add_rows(self, lr_rows: list[tuple[int, float]], metrics_row: dict | None = None) -> None:
        """Append one epoch's LR rows (and its metrics row) and flush both CSVs whole."""
        self._lr.extend(f"{step},{lr!r}" for step, lr in lr_rows)
        write_atomic(self.path / "lr.csv", "\n".join(self._lr) + "\n")
        if metrics_row is not None:
            self._metrics.append(",".join(_format(metrics_row[c]) for c in METRICS_COLUMNS))
        write_atomic(self.path / "metrics.csv", "\n".join(self._metrics) + "\n")

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.path / "summary.json", json.dumps(summary, indent=2) + "\n")

    def write_checkpoint(self, save: Callable[[BinaryIO], None]) -> None:
        write_atomic(self.checkpoint_path, save)
