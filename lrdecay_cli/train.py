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


def _autocast(device: torch.device, precision: str):
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
        with _autocast(x.device, precision):
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return loss_sum.item() / len(y), correct.item() / len(y)


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
    n_train = len(data.train_y)
    batch_weights = torch.full((steps_per_epoch,), float(spec.train.batch_size), device=device)
    batch_weights[-1] = n_train - spec.train.batch_size * (steps_per_epoch - 1)

    run = RunDir.create(runs_dir, dirname, stamped=False) if dirname else RunDir.create(runs_dir, spec.name)
    started = datetime.now(timezone.utc)
    summary = {
        "status": "running", "message": None, "name": spec.name, "seed": spec.seed,
        "epochs": spec.train.epochs, "epochs_completed": 0, "steps": 0, "steps_per_epoch": steps_per_epoch,
        "train_size": n_train, "val_size": len(data.val_y), "test_size": len(data.test_y),
        "best_val_acc": None, "best_epoch": None, "final_val_acc": None, "final_val_loss": None,
        "final_train_loss": None, "test_acc": None, "test_loss": None, "wall_seconds": 0.0,
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "lrdecay": lrdecay_cli.__version__, "git_revision": git_revision(),
        "started_at": started.isoformat(timespec="seconds"), "finished_at": None, "diverged": None,
    }

    def save_checkpoint(epoch: int, step: int) -> None:
        state = {
            "epoch": epoch, "step": step, "spec": spec.model_dump(mode="json"),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": {"name": spec.schedule.name, "step": step, "state": schedule.state_dict()},
            "rng": {"torch": torch.get_rng_state(), "order": order.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None},
        }
        run.write_checkpoint(lambda f: torch.save(state, f))

    run.write_config(spec.dump())
    run.write_summary(summary)
    save_checkpoint(0, 0)
    observer.on_start(run.path, summary)

    step = 0
    start = time.perf_counter()
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
                with _autocast(device, spec.train.precision):
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
            row = {
                "epoch": epoch, "step": step, "lr": lr_rows[-1][1],
                "train_loss": float((losses * batch_weights).sum() / n_train),
                "train_acc": correct.item() / n_train,
                "val_loss": val_loss, "val_acc": val_acc, "seconds": time.perf_counter() - start,
            }
            schedule.observe(step, {"val_loss": val_loss, "val_acc": val_acc})
            run.add_rows(lr_rows, row)
            save_checkpoint(epoch, step)
            if summary["best_val_acc"] is None or val_acc > summary["best_val_acc"]:
                summary.update(best_val_acc=val_acc, best_epoch=epoch)
            summary.update(epochs_completed=epoch, steps=step, final_val_acc=val_acc, final_val_loss=val_loss,
                           final_train_loss=row["train_loss"], wall_seconds=row["seconds"])
            run.write_summary(summary)
            observer.on_epoch_end(row)
        test_loss, test_acc = evaluate(forward, data.test_x, data.test_y, spec.train.eval_batch_size,
                                       spec.train.precision)
        summary.update(status="completed", test_loss=test_loss, test_acc=test_acc)
    except Diverged as exc:
        run.add_rows(lr_rows)
        summary.update(status="diverged", message=str(exc), steps=exc.step + 1,
                       diverged={"step": exc.step, "epoch": exc.epoch, "lr": exc.lr,
                                 "loss": exc.loss if math.isfinite(exc.loss) else str(exc.loss)})
    except KeyboardInterrupt:
        summary.update(status="interrupted", message="interrupted by the user")
        raise
    except Exception as exc:
        summary.update(status="failed", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        summary.update(wall_seconds=time.perf_counter() - start,
                       finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        run.write_summary(summary)
    observer.on_finish(summary)
    return RunResult(run.path, summary)
