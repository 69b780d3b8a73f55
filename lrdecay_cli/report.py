"""Everything lrdecay prints: progress bars, result tables, errors (the only module that prints)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def error(line: str) -> None:
    """One plain line on stderr (no markup, no wrapping), the form every user error takes."""
    sys.stderr.write(f"error: {line}\n")


def print_json(data: dict) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


class TrainProgress:
    """A rich progress bar per epoch with live loss and LR; the epoch's validation result when it ends."""

    def __init__(self, console: Console = stderr):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=console,
        )
        self.task = None

    def on_start(self, run_dir: Path, summary: dict) -> None:
        self.console.print(f"run [bold]{run_dir}[/] on {summary['device_name']}: "
                           f"{summary['train_size']} train / {summary['val_size']} val images, "
                           f"{summary['steps_per_epoch']} steps per epoch")
        self.progress.start()

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, status="")

    def on_progress(self, steps_done: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=steps_done, status=f"loss {loss:.4f}  lr {lr:.4g}")

    def on_epoch_end(self, row: dict) -> None:
        self.progress.update(self.task, status=(
            f"loss {row['train_loss']:.4f}  acc {_pct(row['train_acc'])}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {_pct(row['val_acc'])}  lr {row['lr']:.4g}"))

    def on_finish(self, summary: dict) -> None:
        self.progress.stop()

    def stop(self) -> None:
        self.progress.stop()


def summary_table(run_dir: Path, summary: dict) -> None:
    """The result of one run, on stdout."""
    table = Table(title=f"{summary['name']}: {summary['status']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("run directory", str(run_dir)),
        ("epochs", f"{summary['epochs_completed']}/{summary['epochs']} ({summary['steps']} steps)"),
        ("test accuracy", _pct(summary["test_acc"])),
        ("test loss", "-" if summary["test_loss"] is None else f"{summary['test_loss']:.4f}"),
        ("best val accuracy", f"{_pct(summary['best_val_acc'])} (epoch {summary['best_epoch']})"),
        ("final val accuracy", _pct(summary["final_val_acc"])),
        ("final train loss", "-" if summary["final_train_loss"] is None else f"{summary['final_train_loss']:.4f}"),
        ("wall time", f"{summary['wall_seconds']:.1f} s on {summary['device_name']}"),
    ]
    if summary.get("message"):
        rows.append(("message", summary["message"]))
    for key, value in rows:
        table.add_row(key, value)
    stdout.print(table)


def data_ready(raw_dir: Path) -> None:
    stdout.print(f"MNIST verified at {raw_dir}")
