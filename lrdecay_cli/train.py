"""The one training loop: a validated `Spec` in, a complete run directory out.

The loop applies the schedule (`schedule(step)`, a pure function of the step for every method
but plateau, which `observe`s the validation metrics after each epoch) to every param group
before each optimizer step and records the LR the optimizer then holds, so lr.csv is evidence,
not a recomputation.
Losses stay on the device; the loop synchronises only every `SYNC_EVERY` steps to check for
divergence and report progress.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

import lrdecay_cli
from lrdecay_cli.data import Batches, default_data_root, load_splits
from lrdecay_cli.device import device_name, resolve_device
from lrdecay_cli.models import build_model
from lrdecay_cli.optim import build_optimizer
from lrdecay_cli.rundir import RunDir, check_writable
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import Spec

SYNC_EVERY = 25
"""Steps between host synchronisations (divergence check, progress update)."""


class TrainObserver:
    """Receives progress from `train`; this base ignores everything (quiet runs, tests)."""

    def on_start(self, run_dir: Path, summary: dict) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_progress(self, steps_done: int, loss: float, lr: float) -> None: ...
    def on_epoch_end(self, row: dict) -> None: ...
    def on_finish(self, summary: dict) -> None: ...


@dataclass
class RunResult:
    path: Path
    summary: dict


class Diverged(Exception):
    def __init__(self, step: int, epoch: int, lr: float, loss: float):
        self.step, self.epoch, self.lr, self.loss = step, epoch, lr, loss
        super().__init__(f"loss became {loss} at step {step} (epoch {epoch}, lr {lr!r})")


def git_revision() -> str | None:
    """The lrdecay source revision, where it runs from a git checkout."""
    root = Path(lrdecay_cli.__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def precision_context(device: torch.device, precision: str):
    """bf16 autocast where the spec asks for it; plain fp32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch_size: int, precision: str) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over (x, y), in eval mode."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for xb, yb in Batches(x, y, batch_size, shuffle=False):
        with precision_context(x.device, precision):
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)


class RunRecord:
    """One run's evidence as it trains: its directory, summary.json and CSV rows.

    Both the training loop and the vectorized sweep executor write through it, so every run
    directory has the same layout and the same summary fields whichever way it was trained.
    """

    def __init__(self, spec: Spec, runs_dir: Path, dirname: str | None, device: torch.device,
                 steps_per_epoch: int, sizes: tuple[int, int, int]):
        self.run = RunDir.create(runs_dir, dirname, stamped=False) if dirname else RunDir.create(runs_dir, spec.name)
        self.path = self.run.path
        self.train_size = sizes[0]
        self.summary = {
            "status": "running", "message": None, "name": spec.name, "seed": spec.seed,
            "epochs": spec.train.epochs, "epochs_completed": 0, "steps": 0, "steps_per_epoch": steps_per_epoch,
            "train_size": sizes[0], "val_size": sizes[1], "test_size": sizes[2],
            "best_val_acc": None, "best_epoch": None, "final_val_acc": None, "final_val_loss": None,
            "final_train_loss": None, "test_acc": None, "test_loss": None, "wall_seconds": 0.0,
            "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "lrdecay": lrdecay_cli.__version__, "git_revision": git_revision(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "finished_at": None,
            "diverged": None,
        }
        self.run.write_config(spec.dump())
        self.run.write_summary(self.summary)
        self.start = time.perf_counter()

    def end_epoch(self, epoch: int, lr_rows: list[tuple[int, float]], train_loss: float, correct: int,
                  val_loss: float, val_acc: float) -> dict:
        """Flush the epoch's rows and summary; return its metrics row."""
        row = {"epoch": epoch, "step": lr_rows[-1][0] + 1, "lr": lr_rows[-1][1], "train_loss": train_loss,
               "train_acc": correct / self.train_size, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": time.perf_counter() - self.start}
        self.run.add_rows(lr_rows, row)
        if self.summary["best_val_acc"] is None or val_acc > self.summary["best_val_acc"]:
            self.summary.update(best_val_acc=val_acc, best_epoch=epoch)
        self.summary.update(epochs_completed=epoch, steps=row["step"], final_val_acc=val_acc, final_val_loss=val_loss,
                            final_train_loss=train_loss, wall_seconds=row["seconds"])
        self.run.write_summary(self.summary)
        return row

    def diverged(self, lr_rows: list[tuple[int, float]], exc: Diverged) -> None:
        """Keep the LR rows up to the step whose loss was not finite; the status says where."""
        self.run.add_rows(lr_rows)
        self.summary.update(status="diverged", message=str(exc), steps=exc.step + 1,
                            diverged={"step": exc.step, "epoch": exc.epoch, "lr": exc.lr,
                                      "loss": exc.loss if math.isfinite(exc.loss) else str(exc.loss)})

    def close(self, **fields) -> dict:
        """Final summary: the given fields (status, message, test metrics), wall time, finish time."""
        self.summary.update(fields, wall_seconds=time.perf_counter() - self.start,
                            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.run.write_summary(self.summary)
        return self.summary


def train(spec: Spec, runs_dir: Path, observer: TrainObserver | None = None, dirname: str | None = None) -> RunResult:
    """Train `spec` into a new run directory under `runs_dir`; user errors are raised before it exists.

    The directory is `<UTC time>-<spec.name>`, or exactly `dirname` where given (a sweep's trials).
    """
    observer = observer or TrainObserver()
    device = resolve_device(spec.train.device)
    check_writable(runs_dir)
    data = load_splits(default_data_root(spec.data.root), spec.data.val_size, spec.data.limit,
                       spec.data.split_seed, device)

    torch.manual_seed(spec.seed)
    model = build_model(spec.model).to(device)
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    forward = torch.compile(model) if spec.train.compile else model
    order = torch.Generator(device=device).manual_seed(spec.seed)
    batches = Batches(data.train_x, data.train_y, spec.train.batch_size, order)
    steps_per_epoch = len(batches)
    schedule = lr_schedule(spec.schedule, spec.optimizer.lr, steps_per_epoch, spec.train.epochs)
    weights = batch_weights(len(data.train_y), spec.train.batch_size, steps_per_epoch, device)

    record = RunRecord(spec, runs_dir, dirname, device, steps_per_epoch,
                       (len(data.train_y), len(data.val_y), len(data.test_y)))

    def save_checkpoint(epoch: int, step: int) -> None:
        state = {
            "epoch": epoch, "step": step, "spec": spec.model_dump(mode="json"),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": {"name": spec.schedule.name, "step": step, "state": schedule.state_dict()},
            "rng": {"torch": torch.get_rng_state(), "order": order.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
        }
        record.run.write_checkpoint(lambda f: torch.save(state, f))

    save_checkpoint(0, 0)
    observer.on_start(record.path, record.summary)

    step = 0
    final: dict = {}
    try:
        for epoch in range(1, spec.train.epochs + 1):
            model.train()
            observer.on_epoch_start(epoch, spec.train.epochs, steps_per_epoch)
            losses = torch.zeros(steps_per_epoch, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            lr_rows: list[tuple[int, float]] = []
            checked = 0
            for i, (xb, yb) in enumerate(batches):
                lr = schedule(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with precision_context(device, spec.train.precision):
                    logits = forward(xb)
                    loss = F.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses[i] = loss.detach()
                correct += (logits.argmax(1) == yb).sum()
                lr_rows.append((step, optimizer.param_groups[0]["lr"]))
                step += 1
                if (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch:
                    bad = (~torch.isfinite(losses[checked:i + 1])).nonzero()
                    if len(bad):
                        at = checked + int(bad[0])
                        del lr_rows[at + 1:]
                        raise Diverged(lr_rows[at][0], epoch, lr_rows[at][1], float(losses[at]))
                    checked = i + 1
                    observer.on_progress(i + 1, float(losses[i]), lr)
            val_loss, val_acc = evaluate(forward, data.val_x, data.val_y, spec.train.eval_batch_size,
                                         spec.train.precision)
            schedule.observe(step, {"val_loss": val_loss, "val_acc": val_acc})
            row = record.end_epoch(epoch, lr_rows, float((losses * weights).sum() / len(data.train_y)),
                                   correct.item(), val_loss, val_acc)
            save_checkpoint(epoch, step)
            observer.on_epoch_end(row)
        test_loss, test_acc = evaluate(forward, data.test_x, data.test_y, spec.train.eval_batch_size,
                                       spec.train.precision)
        final = {"status": "completed", "test_loss": test_loss, "test_acc": test_acc}
    except Diverged as exc:
        record.diverged(lr_rows, exc)
    except KeyboardInterrupt:
        final = {"status": "interrupted", "message": "interrupted by the user"}
        raise
    except Exception as exc:
        final = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
        raise
    finally:
        summary = record.close(**final)
    observer.on_finish(summary)
    return RunResult(record.path, summary)


def batch_weights(n_train: int, batch_size: int, steps_per_epoch: int, device: torch.device) -> torch.Tensor:
    """Images in each step's batch (the last one partial), to average per-step losses over the epoch."""
    weights = torch.full((steps_per_epoch,), float(batch_size), device=device)
    weights[-1] = n_train - batch_size * (steps_per_epoch - 1)
    return weights
