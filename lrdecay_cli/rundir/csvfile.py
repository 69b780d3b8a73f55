"""The CSVs lrdecay writes and reads back: floats in full precision (repr), so values round-trip bit for
bit; a torn, edited or gapped file is refused naming its file and line, never read as a shorter curve."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lrdecay_cli.errors import UserError


def read_csv(path: Path, columns: tuple[str, ...],
             older: tuple[tuple[str, ...], ...] = ()) -> list[dict[str, float | int | None]]:
    """A CSV that lrdecay wrote, as typed rows (epoch and step ints, the rest floats, empty cells None); a
    missing file is no rows. A file with one of the `older` headers (written before a column was added) is
    read too, the columns it lacks None."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read it ({exc.__class__.__name__})", where=str(path), fix="check the file") from None
    if not lines:
        return []
    header = tuple(lines[0].split(","))
    if header != columns and header not in older:
        raise UserError(f"unexpected header {lines[0][:80]!r}", where=f"{path}:1",
                        fix=f"the header must be {','.join(columns)}; restore the file or rerun")
    rows, absent = [], dict.fromkeys(c for c in columns if c not in header)
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        try:
            if len(cells) != len(header):
                raise ValueError(f"{len(cells)} cells, expected {len(header)}")
            row = {name: _cell(name, cell) for name, cell in zip(header, cells)}
            rows.append({**row, **absent} if absent else row)
        except ValueError as exc:
            raise UserError(f"torn or malformed row ({exc})", where=f"{path}:{number}",
                            fix="the file was cut or edited; resume the run (lrdecay train --resume) or rerun it") from None
    return rows


def check_contiguous(rows: list[dict], column: str, first: int, path: Path, expected: int | None = None) -> None:
    """Refuse rows whose `column` does not count up from `first` by one (or, where given, are not `expected`)."""
    for line, (row, value) in enumerate(zip(rows, range(first, first + len(rows))), start=2):
        if row[column] != value:
            raise UserError(f"{column} {row[column]} where {value} was due: rows are missing or repeated",
                            where=f"{path}:{line}", fix="the file was damaged or edited; rerun the run")
    if expected is not None and len(rows) != expected:
        raise UserError(f"{len(rows)} rows where the checkpoint needs {expected}", where=str(path),
                        fix="the file was damaged or edited; the run cannot resume exactly: rerun it")


def check_epochs(rows: list[dict], path: Path, expected: int | None = None) -> None:
    """Refuse metrics rows whose epochs do not count up from 1 (an epoch's evaluations, `train.evals_per_epoch`,
    share its number) or whose steps do not grow (or, where given, that hold other than `expected` epochs)."""
    epoch, step = 0, -1
    for line, row in enumerate(rows, start=2):
        due = f"{epoch + 1}" if epoch == 0 else f"{epoch} or {epoch + 1}"
        problem = (f"epoch {row['epoch']} where {due} was due: rows are missing or repeated"
                   if row["epoch"] not in (epoch, epoch + 1) or row["epoch"] < 1 else
                   f"step {row['step']} after step {step}: rows are repeated or out of order" if row["step"] <= step
                   else None)
        if problem:
            raise UserError(problem, where=f"{path}:{line}", fix="the file was damaged or edited; rerun the run")
        epoch, step = row["epoch"], row["step"]
    if expected is not None and epoch != expected:
        raise UserError(f"{len(rows)} rows of {epoch} epochs where the checkpoint needs {expected} epochs",
                        where=str(path), fix="the file was damaged or edited; the run cannot resume exactly: rerun it")


def _cell(name: str, text: str) -> float | int | None:
    if text == "":
        if name in ("epoch", "step"):
            raise ValueError(f"empty {name}")
        return None
    return int(text) if name in ("epoch", "step") else float(text)


def format_cell(value) -> str:
    """CSV cell: floats in full precision (repr), so values read back bit for bit."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def to_csv(rows: list[dict]) -> str:
    """The CSV text of `rows` (columns: the first row's keys), cells as `format_cell` writes them: every CSV
    lrdecay writes besides a run's own two."""
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: format_cell(v) for k, v in row.items()} for row in rows)
    return out.getvalue()
