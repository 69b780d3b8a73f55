"""The one training loop: K >= 1 runs trained in lockstep (K = 1: `SingleTrainer`; K > 1: a
`StackedTrainer`, every sweep executor's unit of work), each into its own run directory, so signals,
divergence, checkpoints and resume are this loop's whatever runs it; and `train` / `resume` for one run.

Before each step the loop sets each run's LR from its schedule and records the LR the optimizer then
holds, so lr.csv is evidence, not a recomputation. What a step returns stays on the device; every
`SYNC_EVERY` steps the loop copies the window's losses to the host at once (lr.csv's loss column), checks
them for divergence, counts correct predictions and reports.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from lrdecay_cli.config.spec import Spec
from lrdecay_cli.config.spec_file import flatten, load
from lrdecay_cli.errors import Interrupted, UserError
from lrdecay_cli.rundir.fs import check_writable, locked, write_atomic
from lrdecay_cli.rundir.layout import CHECKPOINT, CONFIG, FINISHED, SUMMARY, Status
from lrdecay_cli.rundir.read import read_summary
from lrdecay_cli.rundir.record import RunDir, RunRecord, provenance
from lrdecay_cli.rundir.tensorboard import require as require_tensorboard
from lrdecay_cli.training import checkpoint
from lrdecay_cli.training.data import KeptSplits
from lrdecay_cli.training.device import device_name, resolve_device
from lrdecay_cli.training.models import build_model
from lrdecay_cli.training.stacked import StackedTrainer
from lrdecay_cli.training.trainer import SingleTrainer, Trainer

SYNC_EVERY = 25
"""Steps between host synchronisations (divergence check, progress update)."""


class TrainObserver:
    """Receives progress from the loop; this base ignores everything (quiet runs, sweeps, tests).
    `on_start`, `on_epoch_end` and `on_finish` come once per run; the others once per step of the stack."""

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


@contextlib.contextmanager
def denormals_flushed():
    """Flush denormal floats to zero while training: RMSprop's square averages of tiny gradients made a CPU run
    ~20x slower. Switched off after, since the setting holds for all float arithmetic of the process."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


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


def _check(stop: dict) -> None:
    if stop["signum"] is not None:
        raise Interrupted(stop["signum"])


@dataclass
class Planned:
    """A run about to train: a new one in `runs_dir`, or one continuing in `path` from its checkpoint `state`
    (`new_config`: write its changed spec once the run is locked)."""

    spec: Spec
    runs_dir: Path | None = None
    dirname: str | None = None
    path: Path | None = None
    state: dict | None = None
    new_config: bool = False

    @property
    def start_step(self) -> int:
        return self.state["step"] if self.state else 0

    def record(self, trainer: Trainer, origin: dict, held: contextlib.ExitStack) -> RunRecord:
        """Its run directory, locked for this process: made afresh, or cut back to its checkpoint."""
        if self.state is None:
            run = RunDir.create(self.runs_dir, self.dirname or self.spec.name, stamped=self.dirname is None)
            held.enter_context(locked(run.path))
            return RunRecord.create(self.spec, run, trainer.steps_per_epoch, trainer.sizes, origin)
        held.enter_context(locked(self.path))
        if self.new_config:
            write_atomic(self.path / CONFIG, self.spec.dump())
        checkpoint.drop_kept(self.path)  # it continues from its current checkpoint: an older one its stack kept is moot
        return RunRecord.reopen(self.path, self.state["epoch"], self.start_step, self.spec.train.tensorboard)


def train_runs(planned: list[Planned], observer: TrainObserver | None = None,
               kept: KeptSplits | None = None) -> list[RunResult]:
    """Train `planned` runs in lockstep (all at the same step) and return their results, in order. A Ctrl-C or
    SIGTERM before the runs exist ends the command as interrupted; one later interrupts the runs."""
    (step,) = {p.start_step for p in planned}
    with stop_on_signals() as stop, denormals_flushed(), contextlib.ExitStack() as held:
        specs = [p.spec for p in planned]
        trainer = SingleTrainer(specs, kept) if len(specs) == 1 else StackedTrainer(specs, kept)
        if any(p.state for p in planned):
            trainer.load_states([p.state for p in planned])
        origin = provenance(str(trainer.device), device_name(trainer.device), torch.__version__,
                            torch.get_num_threads())
        _check(stop)
        records = [p.record(trainer, origin, held) for p in planned]
        if step == 0:
            checkpoint.write([r.path for r in records], trainer.states(0, 0))
        first_epoch = planned[0].state["epoch"] + 1 if planned[0].state else 1
        summaries = _train_loop(trainer, records, observer or TrainObserver(), first_epoch, step, stop)
    return [RunResult(record.path, summary) for record, summary in zip(records, summaries)]


def train(spec: Spec, runs_dir: Path, observer: TrainObserver | None = None, dirname: str | None = None,
          source: str = "the spec") -> RunResult:
    """Train `spec` into `runs_dir/<UTC time>-<spec.name>` (or `dirname`: a sweep's trials); user errors
    (naming `source`, where the spec came from) are raised before the directory exists."""
    spec.check_schedule(source)
    resolve_device(spec.train.device)
    check_writable(runs_dir, run_bytes(spec))
    if spec.train.tensorboard:
        require_tensorboard()
    return train_runs([Planned(spec, runs_dir, dirname)], observer)[0]


def continuing(run_dir: Path, spec: Spec | None = None, force: bool = False) -> Planned | RunResult:
    """An interrupted run ready to continue from its checkpoint, or its result where it has finished; nothing
    is written. `spec` must equal the run's config.yaml, and the CPU thread count the run's, unless `force`."""
    config, saved_state = run_dir / CONFIG, run_dir / CHECKPOINT
    if not config.is_file() or not saved_state.is_file():
        raise UserError("not a run directory with a checkpoint", where=str(run_dir),
                        fix="pass a directory made by lrdecay train")
    saved = load(config)
    summary = read_summary(run_dir)
    if summary is None:
        raise UserError("summary.json is missing or not valid JSON", where=str(run_dir / SUMMARY),
                        fix="restore it; without it the run cannot be resumed (train it again)")
    if summary.get("status") in FINISHED:
        return RunResult(run_dir, summary, resumed=False)
    state = checkpoint.read(saved_state)
    changed = spec is not None and spec != saved
    if changed:
        given, stored = flatten(spec.model_dump(mode="json")), flatten(saved.model_dump(mode="json"))
        fields = sorted(k for k, v in given.items() if stored.get(k, object()) != v)
        fields += sorted(set(stored) - set(given))
        if not force:
            raise UserError(f"the spec differs from the run's config.yaml in {', '.join(fields)}",
                            where=f"--resume {run_dir}", fix="resume without a spec, or pass --force")
        spec.check_schedule(f"--resume {run_dir}")
    resumed = spec if changed else saved
    checkpoint.check_fits(state, resumed, saved_state)
    if resumed.train.device != "cuda" and not force:
        checkpoint.check_threads([summary.get("threads")], torch.get_num_threads(), f"--resume {run_dir}")
    return Planned(resumed, path=run_dir, state=state, new_config=changed)


def resume(run_dir: Path, spec: Spec | None = None, force: bool = False,
           observer: TrainObserver | None = None) -> RunResult:
    """Continue an interrupted run from its last checkpoint (the end of its last finished epoch)."""
    plan = continuing(run_dir, spec, force)
    return plan if isinstance(plan, RunResult) else train_runs([plan], observer)[0]


def run_bytes(spec: Spec) -> int:
    """About the most disk a run needs at once: its checkpoint (weights and up to two optimizer buffers
    each, float32) twice while it is replaced, lr.csv (step, LR, loss), TensorBoard events, and 1 MB for the rest."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        weights = sum(p.numel() for p in build_model(spec.model).parameters())
    steps = spec.train.epochs * spec.steps_per_epoch()
    return 2 * 3 * 4 * weights + (60 + 120 * spec.train.tensorboard) * steps + (1 << 20)


def _train_loop(trainer: Trainer, records: list[RunRecord], observer: TrainObserver, first_epoch: int,
                step: int, stop: dict) -> list[dict]:
    """Epochs `first_epoch`.. of K runs at `step`, then the test evaluation. A member whose loss or gradient is
    not finite is marked diverged and frozen. Ctrl-C or SIGTERM stops all after the step in flight."""
    spec, members = trainer.specs[0], len(records)
    alive = list(range(members))
    finals: list[dict] = [{} for _ in records]
    for record in records:
        observer.on_start(record.path, record.summary)
    try:
        for epoch in range(first_epoch, spec.train.epochs + 1):
            step = _epoch(trainer, records, observer, epoch, step, stop, alive)
        data = trainer.data
        test_loss, test_acc = (trainer.evaluate(data.test_x, data.test_y) if spec.train.test_eval
                               else ([None] * members, [None] * members))  # one train section per stack
        _check(stop)  # a signal during the test evaluation: --resume evaluates again
        for k in alive:
            finals[k] = {"status": Status.COMPLETED, "test_loss": test_loss[k], "test_acc": test_acc[k]}
    except _NoneLeft:
        pass
    except Interrupted as exc:
        for k in alive:
            done = records[k].summary["epochs_completed"]
            finals[k] = {"status": Status.INTERRUPTED, "signal": str(exc),
                         "message": f"{exc} after epoch {done} (+ part of the next, discarded); "
                                    f"continue with: lrdecay train --resume {records[k].path}"}
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        for k in alive:
            finals[k] = ({"status": Status.INTERRUPTED, "message": "interrupted by the user"} if interrupted else
                         {"status": Status.FAILED, "message": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        summaries = [record.close(**final) for record, final in zip(records, finals)]
    for summary in summaries:
        observer.on_finish(summary)
    return summaries


def _epoch(trainer: Trainer, records: list[RunRecord], observer: TrainObserver, epoch: int, step: int, stop: dict,
           alive: list[int]) -> int:
    """One epoch of the members still `alive` (a diverged one leaves it): its steps, the validation, each
    run's rows, summary and checkpoint; returns the step count after it."""
    spec, device, data, members = trainer.specs[0], trainer.device, trainer.data, len(records)
    steps_per_epoch = trainer.steps_per_epoch
    trainer.train_mode(True)
    observer.on_epoch_start(epoch, spec.train.epochs, steps_per_epoch)
    losses = torch.zeros(members, steps_per_epoch, device=device)
    correct = torch.zeros(members, dtype=torch.int64, device=device)
    lr_rows: list[list[tuple[int, float, float]]] = [[] for _ in records]  # lr.csv's: step, LR, loss
    window, checked = StepWindow(), 0
    within = evaluations_within(steps_per_epoch, spec.train.evals_per_epoch)
    for i, (xb, yb) in enumerate(trainer.batches):
        lrs = [schedule(step) for schedule in trainer.schedules]
        window.add(*trainer.step(xb, yb, lrs), yb, step, trainer.lrs_held())
        step += 1
        if (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch or i + 1 in within:
            window_losses, healthy, hits, rows = window.close(members)
            losses[:, checked:i + 1] = window_losses
            correct += hits
            for k in alive:
                lr_rows[k] += rows[k]
            for k, at, cause in first_faults(healthy, lr_rows, checked, alive):
                del lr_rows[k][at + 1:]
                records[k].diverged(lr_rows[k], epoch, cause)
                trainer.freeze(k)
                alive.remove(k)
            if not alive:
                raise _NoneLeft
            checked = i + 1
            observer.on_progress(i + 1, lr_rows[alive[0]][-1][2], lrs[alive[0]])
            if i + 1 in within:
                _evaluate_within(trainer, records, alive, epoch, lr_rows, losses[:, :i + 1], correct)
        _check(stop)
    if len(data.val_y):
        val_loss, val_acc = trainer.evaluate(data.val_x, data.val_y)
    else:  # data.val_size 0: no validation metrics (the spec refuses a plateau that monitors them)
        val_loss = val_acc = [None] * members
    weights = batch_weights(len(data.train_y), spec.train.batch_size, steps_per_epoch, device)
    train_loss = ((losses * weights).sum(1) / len(data.train_y)).tolist()
    correct_counts = correct.tolist()
    for k in alive:
        trainer.schedules[k].observe(step, {"val_loss": val_loss[k], "val_acc": val_acc[k], "train_loss": train_loss[k]})
        observer.on_epoch_end(records[k].end_epoch(epoch, lr_rows[k], train_loss[k], correct_counts[k],
                                                   val_loss[k], val_acc[k]))
    states = trainer.states(epoch, step)
    checkpoint.write([records[k].path for k in alive], [states[k] for k in alive])
    _check(stop)
    return step


def evaluations_within(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """The steps into an epoch after which it evaluates the validation set besides its end: every
    ceil(steps / evals_per_epoch) (none for one evaluation an epoch)."""
    every = math.ceil(steps_per_epoch / evals_per_epoch)
    return set(range(every, steps_per_epoch, every))


def _evaluate_within(trainer: Trainer, records: list[RunRecord], alive: list[int], epoch: int,
                     lr_rows: list[list[tuple[int, float, float]]], losses: torch.Tensor, correct: torch.Tensor) -> None:
    """An evaluation within the epoch (train.evals_per_epoch > 1): each member's metrics row after the steps so far,
    train_loss and train_acc over them; no schedule, summary or checkpoint sees it."""
    images = trainer.specs[0].train.batch_size * losses.shape[1]  # whole batches: only the epoch's last is partial
    train_loss = (losses.sum(1) / losses.shape[1]).tolist()
    train_acc = [c / images for c in correct.tolist()]
    data = trainer.data
    val_loss, val_acc = trainer.evaluate(data.val_x, data.val_y)
    trainer.train_mode(True)
    for k in alive:
        records[k].evaluation(epoch, lr_rows[k], train_loss[k], train_acc[k], val_loss[k], val_acc[k])


class _NoneLeft(Exception):
    """Every member diverged: the loop ends without a test evaluation."""


class StepWindow:
    """The steps since the loop's last sync, each as the trainer returned it (loss, gradient sum, logits)
    with its labels, kept on the device untouched, and its step and the LRs the optimizer held: a step costs
    no tensor operation of the loop's own."""

    def __init__(self):
        self.losses: list[torch.Tensor] = []
        self.sums: list[torch.Tensor] = []
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.held: list[tuple[int, list[float]]] = []

    def add(self, loss: torch.Tensor, grad_sum: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            step: int, lrs: list[float]) -> None:
        self.losses.append(loss)
        self.sums.append(grad_sum)
        self.logits.append(logits)
        self.labels.append(labels)
        self.held.append((step, lrs))

    def close(self, members: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[tuple]]]:
        """The window's losses and whether each step's loss and gradient were finite ([members, steps]), each
        member's count of correct predictions over it ([members]), and each member's lr.csv rows (step, LR,
        loss), its losses copied to the host at once; the window starts empty again."""
        losses = torch.stack(self.losses, -1).view(members, -1)
        healthy = torch.isfinite(losses) & torch.isfinite(torch.stack(self.sums, -1).view(members, -1))
        hits = (torch.cat(self.logits, -2).argmax(-1) == torch.cat(self.labels, -1)).sum(-1).view(members)
        rows = [[(step, lrs[k], loss) for (step, lrs), loss in zip(self.held, member_losses)]
                for k, member_losses in enumerate(losses.tolist())]
        for values in (self.losses, self.sums, self.logits, self.labels, self.held):
            values.clear()
        return losses, healthy, hits, rows


def first_faults(healthy: torch.Tensor, lr_rows: list[list[tuple[int, float, float]]], start: int,
                 members: list[int]) -> list[tuple[int, int, str]]:
    """(member, step index, "loss" | "gradient") of each member's first non-finite step in a window starting
    at step index `start` (`healthy`: [all members, the window's steps]; `lr_rows`: each member's rows of the
    epoch, loss last); one host sync."""
    window_ok = healthy[members].cpu()
    if window_ok.all():
        return []
    faults = []
    for row, k in enumerate(members):
        bad = (~window_ok[row]).nonzero()
        if len(bad):
            at = start + int(bad[0])
            faults.append((k, at, "loss" if not math.isfinite(lr_rows[k][at][2]) else "gradient"))
    return faults


def batch_weights(n_train: int, batch_size: int, steps_per_epoch: int, device: torch.device) -> torch.Tensor:
    """Images in each step's batch (the last one partial), to average per-step losses over the epoch."""
    weights = torch.full((steps_per_epoch,), float(batch_size), device=device)
    weights[-1] = n_train - batch_size * (steps_per_epoch - 1)
    return weights
