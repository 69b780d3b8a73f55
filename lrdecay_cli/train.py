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
import json
import math
import signal
import subprocess
import threading
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
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import RunDir, check_writable, write_atomic
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import Spec
from lrdecay_cli.tensorboard import RunEvents, require as require_tensorboard

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
    resumed: bool = True
    """False where `resume` found the run already finished and did nothing."""


class Diverged(Exception):
    """A step's loss, or its gradient, was not finite; `cause` says which ("loss" or "gradient")."""

    def __init__(self, step: int, epoch: int, lr: float, loss: float, cause: str = "loss"):
        self.step, self.epoch, self.lr, self.loss, self.cause = step, epoch, lr, loss, cause
        what = f"loss became {loss}" if cause == "loss" else f"the gradient became non-finite (loss {loss})"
        super().__init__(f"{what} at step {step} (epoch {epoch}, lr {lr!r})")


def gradients_finite(grads: list[torch.Tensor], members: int | None = None) -> torch.Tensor:
    """True where every gradient entry is finite, left on the device (no host sync): one bool, or one
    per member of a stacked model (`members`: the size of the leading dimension of every gradient).
    A NaN or inf entry makes its tensor's sum non-finite (as does a sum beyond float range, which is
    divergence too), so one sum per tensor checks them all; cheaper than a norm or an elementwise test."""
    if members is None:
        return torch.isfinite(torch.stack([g.sum() for g in grads]).sum())
    # summing over the trailing dims reads a gradient in whatever layout it has (no reshape copy)
    return torch.isfinite(torch.stack([g.sum(dim=tuple(range(1, g.dim()))) if g.dim() > 1 else g
                                       for g in grads]).sum(0))


def first_fault(healthy: torch.Tensor, losses: torch.Tensor, start: int, end: int) -> tuple[int, str] | None:
    """The first step in [start, end) whose loss or gradient was not finite, and which of the two
    (one host sync: the loop calls it every SYNC_EVERY steps)."""
    bad = (~healthy[start:end]).nonzero()
    if not len(bad):
        return None
    at = start + int(bad[0])
    return at, "loss" if not math.isfinite(float(losses[at])) else "gradient"


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
    """One run's evidence as it trains: its directory, summary.json, CSV rows and, where the spec asks
    for them, TensorBoard events.

    Both the training loop and the vectorized sweep executor write through it, so every run
    directory has the same layout and the same summary fields whichever way it was trained.
    """

    def __init__(self, spec: Spec, runs_dir: Path, dirname: str | None, device: torch.device,
                 steps_per_epoch: int, sizes: tuple[int, int, int]):
        if spec.train.tensorboard:
            require_tensorboard()
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
        self.events = RunEvents(self.path, spec.dump()) if spec.train.tensorboard else None
        self.start = time.perf_counter()

    @classmethod
    def reopen(cls, path: Path, epoch: int, step: int, train_size: int, tensorboard: bool = False) -> "RunRecord":
        """An interrupted run's record, cut back to its checkpoint after `epoch` epochs and `step` steps."""
        if tensorboard:
            require_tensorboard()
        record = cls.__new__(cls)
        record.run = RunDir.reopen(path, epoch, step)
        record.path, record.train_size = path, train_size
        record.summary = json.loads((path / "summary.json").read_text())
        record.summary.pop("signal", None)
        rows = record.run.metrics_rows()
        best = max(rows, key=lambda r: r["val_acc"], default=None)
        last = rows[-1] if rows else None
        record.summary.update(
            status="running", message=None, epochs_completed=epoch, steps=step, diverged=None,
            test_acc=None, test_loss=None, finished_at=None,
            best_val_acc=best and best["val_acc"], best_epoch=best and best["epoch"],
            final_val_acc=last and last["val_acc"], final_val_loss=last and last["val_loss"],
            final_train_loss=last and last["train_loss"])
        record.run.write_summary(record.summary)
        record.events = RunEvents(path, (path / "config.yaml").read_text(), first_step=step) if tensorboard else None
        record.start = time.perf_counter() - (last["seconds"] if last else 0.0)  # seconds go on counting
        return record

    def end_epoch(self, epoch: int, lr_rows: list[tuple[int, float]], step_losses: torch.Tensor, train_loss: float,
                  correct: int, val_loss: float, val_acc: float) -> dict:
        """Flush the epoch's rows (`step_losses`: the loss of each of its steps, on the device), events and
        summary; return its metrics row."""
        row = {"epoch": epoch, "step": lr_rows[-1][0] + 1, "lr": lr_rows[-1][1], "train_loss": train_loss,
               "train_acc": correct / self.train_size, "val_loss": val_loss, "val_acc": val_acc,
               "seconds": time.perf_counter() - self.start}
        self.run.add_rows(lr_rows, row)
        if self.events:
            self.events.steps(lr_rows, step_losses.tolist())
            self.events.epoch(row)
        if self.summary["best_val_acc"] is None or val_acc > self.summary["best_val_acc"]:
            self.summary.update(best_val_acc=val_acc, best_epoch=epoch)
        self.summary.update(epochs_completed=epoch, steps=row["step"], final_val_acc=val_acc, final_val_loss=val_loss,
                            final_train_loss=train_loss, wall_seconds=row["seconds"])
        self.run.write_summary(self.summary)
        return row

    def diverged(self, lr_rows: list[tuple[int, float]], step_losses: torch.Tensor, exc: Diverged) -> None:
        """Keep the LR rows (and step losses) up to the step whose loss was not finite; the status says where."""
        self.run.add_rows(lr_rows)
        if self.events:
            self.events.steps(lr_rows, step_losses[:len(lr_rows)].tolist())
        self.summary.update(status="diverged", message=str(exc), steps=exc.step + 1,
                            diverged={"step": exc.step, "epoch": exc.epoch, "lr": exc.lr, "cause": exc.cause,
                                      "loss": exc.loss if math.isfinite(exc.loss) else str(exc.loss)})

    def close(self, **fields) -> dict:
        """Final summary: the given fields (status, message, test metrics), wall time, finish time."""
        self.summary.update(fields, wall_seconds=time.perf_counter() - self.start,
                            finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.run.write_summary(self.summary)
        if self.events:
            self.events.close(self.summary)
        return self.summary


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the loop stopped after the step in flight."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_on_signals():
    """While training, Ctrl-C and SIGTERM only raise a flag that the loop checks after each step."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["signum"] = signum

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Trainer:
    """Everything one run needs, built from its spec: data on the device, model, optimizer, schedule,
    and the data-order generator; `state` / `load_state` are its checkpoint."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.device = resolve_device(spec.train.device)
        self.data = load_splits(default_data_root(spec.data.root), spec.data.val_size, spec.data.limit,
                                spec.data.split_seed, self.device)
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.model).to(self.device)
        self.optimizer = build_optimizer(spec.optimizer, self.model.parameters())
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.forward = torch.compile(self.model) if spec.train.compile else self.model
        self.order = torch.Generator(device=self.device).manual_seed(spec.seed)
        self.batches = Batches(self.data.train_x, self.data.train_y, spec.train.batch_size, self.order)
        self.steps_per_epoch = len(self.batches)
        self.schedule = lr_schedule(spec.schedule, spec.optimizer.lr, self.steps_per_epoch, spec.train.epochs)
        self.sizes = (len(self.data.train_y), len(self.data.val_y), len(self.data.test_y))

    def step(self, xb: torch.Tensor, yb: torch.Tensor, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step at `lr` (set on every param group first): the loss (detached), the logits,
        and whether the loss and the gradient were finite, all left on the device."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with precision_context(self.device, self.spec.train.precision):
            logits = self.forward(xb)
            loss = F.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        healthy = torch.isfinite(loss.detach()) & gradients_finite([p.grad for p in self.params])
        self.optimizer.step()
        return loss.detach(), logits, healthy

    def state(self, epoch: int, step: int) -> dict:
        cuda = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        return {
            "epoch": epoch, "step": step, "spec": self.spec.model_dump(mode="json"),
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": {"name": self.spec.schedule.name, "step": step, "state": self.schedule.state_dict()},
            "rng": {"torch": torch.get_rng_state(), "order": self.order.get_state(), "cuda": cuda},
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"]["state"])
        torch.set_rng_state(state["rng"]["torch"])
        self.order.set_state(state["rng"]["order"])
        if state["rng"]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])


def train(spec: Spec, runs_dir: Path, observer: TrainObserver | None = None, dirname: str | None = None) -> RunResult:
    """Train `spec` into a new run directory under `runs_dir`; user errors are raised before it exists.

    The directory is `<UTC time>-<spec.name>`, or exactly `dirname` where given (a sweep's trials).
    """
    resolve_device(spec.train.device)
    check_writable(runs_dir, run_bytes(spec))
    if spec.train.tensorboard:
        require_tensorboard()
    trainer = Trainer(spec)
    record = RunRecord(spec, runs_dir, dirname, trainer.device, trainer.steps_per_epoch, trainer.sizes)
    save_checkpoint(record, trainer.state(0, 0))
    return _train_loop(trainer, record, observer or TrainObserver(), first_epoch=1, step=0)


def resume(run_dir: Path, spec: Spec | None = None, force: bool = False,
           observer: TrainObserver | None = None) -> RunResult:
    """Continue an interrupted run from its last checkpoint (the end of its last finished epoch).

    `spec` (from the command line) must equal the run's config.yaml unless `force`.
    """
    config, checkpoint = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    if not config.is_file() or not checkpoint.is_file():
        raise UserError("not a run directory with a checkpoint", where=str(run_dir),
                        fix="pass a directory made by lrdecay train")
    from lrdecay_cli.spec import flatten, load

    saved = load(config)
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("status") in ("completed", "diverged"):
        return RunResult(run_dir, summary, resumed=False)
    if spec is not None and spec != saved:
        given, stored = flatten(spec.model_dump(mode="json")), flatten(saved.model_dump(mode="json"))
        changed = sorted(k for k, v in given.items() if stored.get(k, object()) != v)
        changed += sorted(set(stored) - set(given))
        if not force:
            raise UserError(f"the spec differs from the run's config.yaml in {', '.join(changed)}",
                            where=f"--resume {run_dir}", fix="resume without a spec, or pass --force")
        saved = spec
        write_atomic(config, spec.dump())
    trainer = Trainer(saved)
    state = torch.load(checkpoint, map_location=trainer.device, weights_only=False)
    trainer.load_state(state)
    record = RunRecord.reopen(run_dir, state["epoch"], state["step"], trainer.sizes[0], saved.train.tensorboard)
    return _train_loop(trainer, record, observer or TrainObserver(), first_epoch=state["epoch"] + 1,
                       step=state["step"])


def run_bytes(spec: Spec) -> int:
    """About the most disk a run needs at once: its checkpoint (weights and up to two optimizer buffers
    each, float32) twice while it is replaced, lr.csv, TensorBoard events, and 1 MB for the rest."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        weights = sum(p.numel() for p in build_model(spec.model).parameters())
    steps = spec.train.epochs * spec.steps_per_epoch()
    return 2 * 3 * 4 * weights + (40 + 120 * spec.train.tensorboard) * steps + (1 << 20)


def save_checkpoint(record: RunRecord, state: dict) -> None:
    record.run.write_checkpoint(lambda f: torch.save(state, f))


def _train_loop(trainer: Trainer, record: RunRecord, observer: TrainObserver, first_epoch: int, step: int) -> RunResult:
    """Epochs `first_epoch`.. of a run whose model, optimizer, schedule and RNGs are at `step`."""
    spec, device, data = trainer.spec, trainer.device, trainer.data
    model, optimizer, schedule, forward = trainer.model, trainer.optimizer, trainer.schedule, trainer.forward
    steps_per_epoch = trainer.steps_per_epoch
    weights = batch_weights(len(data.train_y), spec.train.batch_size, steps_per_epoch, device)
    observer.on_start(record.path, record.summary)
    final: dict = {}
    with stop_on_signals() as stop:
        try:
            for epoch in range(first_epoch, spec.train.epochs + 1):
                model.train()
                observer.on_epoch_start(epoch, spec.train.epochs, steps_per_epoch)
                losses = torch.zeros(steps_per_epoch, device=device)
                healthy = torch.ones(steps_per_epoch, dtype=torch.bool, device=device)
                correct = torch.zeros((), dtype=torch.int64, device=device)
                lr_rows: list[tuple[int, float]] = []
                checked = 0
                for i, (xb, yb) in enumerate(trainer.batches):
                    lr = schedule(step)
                    losses[i], logits, healthy[i] = trainer.step(xb, yb, lr)
                    correct += (logits.argmax(1) == yb).sum()
                    lr_rows.append((step, optimizer.param_groups[0]["lr"]))
                    step += 1
                    if (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch:
                        fault = first_fault(healthy, losses, checked, i + 1)
                        if fault is not None:
                            at, cause = fault
                            del lr_rows[at + 1:]
                            raise Diverged(lr_rows[at][0], epoch, lr_rows[at][1], float(losses[at]), cause)
                        checked = i + 1
                        observer.on_progress(i + 1, float(losses[i]), lr)
                    if stop["signum"] is not None:
                        raise Interrupted(stop["signum"])
                val_loss, val_acc = evaluate(forward, data.val_x, data.val_y, spec.train.eval_batch_size,
                                             spec.train.precision)
                schedule.observe(step, {"val_loss": val_loss, "val_acc": val_acc})
                row = record.end_epoch(epoch, lr_rows, losses, float((losses * weights).sum() / len(data.train_y)),
                                       correct.item(), val_loss, val_acc)
                save_checkpoint(record, trainer.state(epoch, step))
                observer.on_epoch_end(row)
                if stop["signum"] is not None:
                    raise Interrupted(stop["signum"])
            test_loss, test_acc = evaluate(forward, data.test_x, data.test_y, spec.train.eval_batch_size,
                                           spec.train.precision)
            final = {"status": "completed", "test_loss": test_loss, "test_acc": test_acc}
        except Diverged as exc:
            record.diverged(lr_rows, losses, exc)
        except Interrupted as exc:
            done = record.summary["epochs_completed"]
            final = {"status": "interrupted", "signal": str(exc),
                     "message": f"{exc} after epoch {done} (+ part of the next, discarded); "
                                f"continue with: lrdecay train --resume {record.path}"}
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
