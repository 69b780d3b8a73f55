"""Events for TensorBoard in `<run>/tensorboard` (`train.tensorboard: true`; an optional extra), every
scalar at its global step. Epoch metrics sit at the epoch's last step, so a resume, which purges the
events from its checkpoint's step on, keeps them. torch.utils.tensorboard is imported only here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir.layout import EVENTS

def require():
    """torch's SummaryWriter; a UserError, raised before any run directory exists, where tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("the tensorboard package is not installed", where="train.tensorboard",
                        fix="pip install 'lrdecay_cli[tensorboard]', or set train.tensorboard: false") from None
    return SummaryWriter


def _after_existing_files(log_dir: Path) -> None:
    """Wait into the next second if an events file was opened in this one: TensorBoard reads the files
    in name order, names start with the second they were opened, and a resumed part must come last."""
    newest = max((int(p.name.split(".")[3]) for p in log_dir.glob("events.out.tfevents.*")), default=-1)
    while int(time.time()) <= newest:
        time.sleep(0.05)


class RunEvents:
    """One run's event writer; `first_step` > 0 continues a resumed run, hiding the events it had
    written from that step on (written after its checkpoint), so no step is counted twice."""

    def __init__(self, run_path: Path, spec_text: str, first_step: int = 0):
        summary_writer = require()
        log_dir = run_path / EVENTS
        resumed = log_dir.is_dir()
        if resumed:
            _after_existing_files(log_dir)
        self.writer = summary_writer(log_dir=str(log_dir), purge_step=first_step if resumed else None)
        self.writer.add_text("spec", f"```yaml\n{spec_text}```", global_step=first_step)
        self.writer.flush()

    def steps(self, lr_rows: Sequence[tuple[int, float, float]]) -> None:
        """Per step, lr.csv's rows: the LR and the training loss of that step's batch."""
        for step, lr, loss in lr_rows:
            self.writer.add_scalar("lr", lr, step)
            self.writer.add_scalar("train/loss", loss, step)

    def epoch(self, row: dict, end: bool = True) -> None:
        """A metrics.csv row at its last step: an epoch's end (flushed, so a killed run leaves readable events), or
        an evaluation within it (`end` False: its val metrics only; train ones count whole epochs)."""
        step = row["step"] - 1
        tags = (("train/loss_epoch", "train_loss"), ("train/acc", "train_acc")) if end else ()
        for tag, column in tags + (("val/loss", "val_loss"), ("val/acc", "val_acc")):
            if row[column] is not None:  # no val metrics where data.val_size is 0
                self.writer.add_scalar(tag, row[column], step)
        self.writer.flush()

    def close(self, summary: dict) -> None:
        """Test metrics (where the run completed) at its last step; then close the files."""
        if summary.get("test_loss") is not None:
            self.writer.add_scalar("test/loss", summary["test_loss"], summary["steps"] - 1)
            self.writer.add_scalar("test/acc", summary["test_acc"], summary["steps"] - 1)
        self.writer.close()
