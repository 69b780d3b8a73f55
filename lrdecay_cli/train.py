"""The one training loop: K >= 1 runs trained in lockstep, each into its own complete run directory.

K = 1 is `lrdecay train` (a plain model, `Trainer`); K > 1 is a stack of models trained as one
(`stack.StackedTrainer`, the vectorized sweep executor's unit of work). Both offer one interface
(`step`, `evaluate`, `states` / `load_states`), so signals, divergence, checkpoints and resume are
this one loop's, whatever runs it.

The loop applies each run's schedule (`schedule(step)`, a pure function of the step for every
method but plateau, which `observe`s the epoch's metrics after each epoch) to the run's param
group before each optimizer step and records the LR the optimizer then holds, so lr.csv is
evidence, not a recomputation. Losses stay on the device; the loop synchronises only every
`SYNC_EVERY` steps to check for divergence and report progress.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from lrdecay_cli.data import Batches, default_data_root, load_splits
from lrdecay_cli.device import device_name, resolve_device
from lrdecay_cli.errors import UserError
from lrdecay_cli.models import build_model
from lrdecay_cli.optim import build_optimizer, load_member_states, member_state
from lrdecay_cli.rundir import (FINISHED, RunDir, RunRecord, Status, check_writable, locked, provenance, read_summary,
                                write_atomic)
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import Spec
from lrdecay_cli.tensorboard import require as require_tensorboard

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


def precision_context(device: torch.device, precision: str):
    """bf16 autocast where the spec asks for it; plain fp32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the loop stopped after the step in flight."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def denormals_flushed():
    """While training, the CPU flushes denormal floats (below ~1e-38) to zero: each costs it a hundred
    times a normal one, and RMSprop's square averages of tiny gradients made a CPU run ~20x slower.
    Switched off again after, since the setting holds for all float arithmetic of the process."""
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


class Trainer:
    """K runs that train in lockstep on one device, sharing the model shape, optimizer kind, data and
    training settings; each has its own seed (initial weights, data order), schedule and optimizer
    hyper-parameters. This class trains one plain model (K = 1); `stack.StackedTrainer` K models as one.

    `step`, `evaluate`, `states` / `load_states` are all the loop and the checkpoints use; a member's
    checkpoint has the same layout whichever trainer wrote it, so any run resumes under either."""

    def __init__(self, specs: list[Spec]):
        first = specs[0]
        self.specs = specs
        self.device = resolve_device(first.train.device)
        self.data = load_splits(default_data_root(first.data.root), first.data.val_size, first.data.limit,
                                first.data.split_seed, self.device, first.data.normalize)
        self.orders = [torch.Generator(device=self.device).manual_seed(spec.seed) for spec in specs]
        self.batches = Batches(self.data.train_x, self.data.train_y, first.train.batch_size,
                               self.orders if len(specs) > 1 else self.orders[0])
        self.steps_per_epoch = len(self.batches)
        self.schedules = [lr_schedule(s.schedule, s.optimizer.lr, self.steps_per_epoch, s.train.epochs) for s in specs]
        self.sizes = (len(self.data.train_y), len(self.data.val_y), len(self.data.test_y))
        self.optimizer = self._build_models()

    # ---- the model part: one plain module here, a stack in stack.StackedTrainer

    to_model_layout = to_stack_layout = None
    """Per parameter, where a trainer keeps it in another memory layout than its model's: functions
    that relay its optimizer state between the two (None: the same layout)."""

    def _build_models(self) -> torch.optim.Optimizer:
        spec = self.specs[0]
        torch.manual_seed(spec.seed)
        self.model = build_model(spec.model).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.forward = torch.compile(self.model) if spec.train.compile else self.model
        return build_optimizer([spec.optimizer], [self.params])

    def train_mode(self, on: bool) -> None:
        self.model.train(on)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, lrs: list[float]) -> tuple[torch.Tensor, ...]:
        """One optimizer step, member k at `lrs[k]`: per member the loss (detached), whether the loss and
        the gradient were finite, and the count of correct predictions, all left on the device."""
        self.optimizer.param_groups[0]["lr"] = lrs[0]
        with precision_context(self.device, self.specs[0].train.precision):
            logits = self.forward(xb)
            loss = F.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        healthy = torch.isfinite(loss.detach()) & gradients_finite([p.grad for p in self.params])
        self.optimizer.step()
        return loss.detach().view(1), healthy.view(1), (logits.argmax(1) == yb).sum().view(1)

    def freeze(self, k: int) -> None:
        """Stop updating member k (it diverged); one plain model has no other member to go on with."""

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Per member: mean cross-entropy and accuracy over (x, y), in eval mode."""
        self.train_mode(False)
        loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
        correct = torch.zeros((), dtype=torch.int64, device=x.device)
        for xb, yb in Batches(x, y, self.specs[0].train.eval_batch_size, shuffle=False):
            with precision_context(x.device, self.specs[0].train.precision):
                logits = self.forward(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
        return [loss_sum.item() / len(y)], [correct.item() / len(y)]

    def model_states(self) -> list[dict]:
        return [self.model.state_dict()]

    def load_model_state(self, k: int, state: dict) -> None:
        self.model.load_state_dict(state)

    # ---- shared by every trainer

    def lrs_held(self) -> list[float]:
        """The LR each member's optimizer group holds (what lr.csv records)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def states(self, epoch: int, step: int) -> list[dict]:
        """Each member's checkpoint after `epoch` epochs and `step` steps: model, optimizer (torch's
        single-optimizer `state_dict` layout), schedule state, RNG states, epoch and step."""
        full = self.optimizer.state_dict()
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        return [{"epoch": epoch, "step": step, "spec": spec.model_dump(mode="json"), "model": model,
                 "optimizer": member_state(full, k, self.to_model_layout),
                 "schedule": {"name": spec.schedule.name, "step": step, "state": schedule.state_dict()},
                 "rng": {**rng, "order": order.get_state()}}
                for k, (spec, model, schedule, order)
                in enumerate(zip(self.specs, self.model_states(), self.schedules, self.orders))]

    def load_states(self, states: list[dict | None]) -> None:
        """Continue members from their checkpoints (None: a member that starts afresh)."""
        for k, state in enumerate(states):
            if state is not None:
                self.load_model_state(k, state["model"])
                self.schedules[k].load_state_dict(state["schedule"]["state"])
                self.orders[k].set_state(state["rng"]["order"])
        load_member_states(self.optimizer, [state and state["optimizer"] for state in states], self.to_stack_layout)
        rng = next(state["rng"] for state in states if state is not None)  # one global RNG for the stack
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])


@dataclass
class Planned:
    """A run about to train: a new one (made as `runs_dir/dirname`, or `<UTC time>-<name>` without a
    dirname), or one continuing in `path` from its checkpoint `state` (`new_config`: the changed spec
    it continues with, written once the run is locked)."""

    spec: Spec
    runs_dir: Path | None = None
    dirname: str | None = None
    path: Path | None = None
    state: dict | None = None
    new_config: bool = False

    @property
    def start_step(self) -> int:
        return self.state["step"] if self.state else 0


def make_trainer(specs: list[Spec]) -> Trainer:
    """One plain model for one run; a stacked model for several."""
    if len(specs) == 1:
        return Trainer(specs)
    from lrdecay_cli.stack import StackedTrainer

    return StackedTrainer(specs)


def train_runs(planned: list[Planned], observer: TrainObserver | None = None) -> list[RunResult]:
    """Train `planned` runs in lockstep (all at the same step) and return their results, in order.

    Ctrl-C and SIGTERM are handled from here to the last file: one that arrives before the runs
    exist ends the command as interrupted, one that arrives later interrupts the runs."""
    (step,) = {p.start_step for p in planned}
    with stop_on_signals() as stop, denormals_flushed(), contextlib.ExitStack() as held:
        trainer = make_trainer([p.spec for p in planned])
        if any(p.state for p in planned):
            trainer.load_states([p.state for p in planned])
        origin = provenance(str(trainer.device), device_name(trainer.device), torch.__version__,
                            torch.get_num_threads())
        if stop["signum"] is not None:
            raise Interrupted(stop["signum"])
        records = []
        for p in planned:
            if p.state is None:
                run = RunDir.create(p.runs_dir, p.dirname, stamped=False) if p.dirname else RunDir.create(p.runs_dir, p.spec.name)
                held.enter_context(locked(run.path))
                records.append(RunRecord.create(p.spec, run, trainer.steps_per_epoch, trainer.sizes, origin))
            else:
                held.enter_context(locked(p.path))
                if p.new_config:
                    write_atomic(p.path / "config.yaml", p.spec.dump())
                records.append(RunRecord.reopen(p.path, p.state["epoch"], step, p.spec.train.tensorboard))
        if step == 0:
            save_checkpoints(records, trainer.states(0, 0))
        first_epoch = planned[0].state["epoch"] + 1 if planned[0].state else 1
        summaries = _train_loop(trainer, records, observer or TrainObserver(), first_epoch, step, stop)
    return [RunResult(record.path, summary) for record, summary in zip(records, summaries)]


def train(spec: Spec, runs_dir: Path, observer: TrainObserver | None = None, dirname: str | None = None,
          source: str = "the spec") -> RunResult:
    """Train `spec` into a new run directory under `runs_dir`; user errors (naming `source`, where the
    spec came from) are raised before it exists.

    The directory is `<UTC time>-<spec.name>`, or exactly `dirname` where given (a sweep's trials).
    """
    spec.check_schedule(source)
    resolve_device(spec.train.device)
    check_writable(runs_dir, run_bytes(spec))
    if spec.train.tensorboard:
        require_tensorboard()
    return train_runs([Planned(spec, runs_dir, dirname)], observer)[0]


def continuing(run_dir: Path, spec: Spec | None = None, force: bool = False) -> Planned | RunResult:
    """An interrupted run ready to continue from its last checkpoint, or its result where it has finished.

    `spec` (from the command line) must equal the run's config.yaml unless `force`; even then it must
    fit the checkpoint (the same model and optimizer). A run made with another count of CPU threads
    would continue with other numbers: refused unless `force`. Nothing is written here."""
    config, checkpoint = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    if not config.is_file() or not checkpoint.is_file():
        raise UserError("not a run directory with a checkpoint", where=str(run_dir),
                        fix="pass a directory made by lrdecay train")
    from lrdecay_cli.spec import flatten, load

    saved = load(config)
    summary = read_summary(run_dir)
    if summary is None:
        raise UserError("summary.json is missing or not valid JSON", where=str(run_dir / "summary.json"),
                        fix="restore it; without it the run cannot be resumed (train it again)")
    if summary.get("status") in FINISHED:
        return RunResult(run_dir, summary, resumed=False)
    state = load_checkpoint(checkpoint)
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
    check_fits(state, resumed, checkpoint)
    threads = torch.get_num_threads()
    if summary.get("threads") not in (None, threads) and resumed.train.device != "cuda" and not force:
        raise UserError(f"the run trained with {summary['threads']} CPU threads and would continue with "
                        f"{threads}, which sums in another order (its numbers would differ)",
                        where=f"--resume {run_dir}", fix="resume it as it ran (the same executor and --workers), "
                                                          "or pass --force")
    return Planned(resumed, path=run_dir, state=state, new_config=changed)


def resume(run_dir: Path, spec: Spec | None = None, force: bool = False,
           observer: TrainObserver | None = None) -> RunResult:
    """Continue an interrupted run from its last checkpoint (the end of its last finished epoch)."""
    plan = continuing(run_dir, spec, force)
    return plan if isinstance(plan, RunResult) else train_runs([plan], observer)[0]


def run_bytes(spec: Spec) -> int:
    """About the most disk a run needs at once: its checkpoint (weights and up to two optimizer buffers
    each, float32) twice while it is replaced, lr.csv, TensorBoard events, and 1 MB for the rest."""
    with torch.device("meta"):  # shapes only: nothing is allocated
        weights = sum(p.numel() for p in build_model(spec.model).parameters())
    steps = spec.train.epochs * spec.steps_per_epoch()
    return 2 * 3 * 4 * weights + (40 + 120 * spec.train.tensorboard) * steps + (1 << 20)


def save_checkpoints(records: list[RunRecord], states: list[dict]) -> None:
    """Each run's checkpoint. A stack's members replace theirs as one: every old one is kept (as
    checkpoint.prev.pt) until all new ones are written, so after a kill -9 in between every member can
    still start from the same step, and the stack resumes as it was (executors.settle_checkpoints)."""
    stacked = len(records) > 1
    for record in records if stacked else ():
        record.run.keep_checkpoint()
    for record, state in zip(records, states):
        record.run.write_checkpoint(lambda f, state=state: torch.save(state, f))
    for record in records if stacked else ():
        record.run.drop_kept()


CHECKPOINT_KEYS = {"epoch": int, "step": int, "spec": dict, "model": dict, "optimizer": dict, "schedule": dict,
                   "rng": dict}


def load_checkpoint(path: Path) -> dict:
    """A checkpoint holds only tensors, numbers, strings and lists/dicts of them: loaded without
    unpickling code (weights_only), so a crafted file cannot run anything. Tensors stay on the CPU;
    loading them into a model or optimizer moves them. A file that is not one is a user error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, random, empty, or a pickle with code in it
        why = (str(exc).splitlines() or [""])[0][:120]
        raise UserError(f"not a readable lrdecay checkpoint ({type(exc).__name__}{': ' + why if why else ''})",
                        where=str(path), fix="the run cannot be resumed from it; train it again") from None
    wrong = [key for key, kind in CHECKPOINT_KEYS.items() if not isinstance(state, dict)
             or not isinstance(state.get(key), kind)]
    if wrong:
        raise UserError(f"not an lrdecay checkpoint (no valid {', '.join(wrong)})", where=str(path),
                        fix="the run cannot be resumed from it; train it again")
    return state


def check_fits(state: dict, spec: Spec, path: Path) -> None:
    """The checkpoint can continue `spec`: the same model (every tensor's name and shape) and the
    same optimizer (its state has that optimizer's buffers); what else a --force changes, it holds."""
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in build_model(spec.model).state_dict().items()}
    held = {name: tuple(t.shape) for name, t in state["model"].items() if isinstance(t, torch.Tensor)}
    if held != shapes:
        raise UserError(f"the checkpoint holds another model than model.name={spec.model.name} "
                        f"{getattr(spec.model, 'hidden', '')}".rstrip(), where=str(path),
                        fix="resume with the run's own model; another model is a new run")
    trained = state["spec"].get("optimizer", {}).get("name")
    if trained != spec.optimizer.name:
        raise UserError(f"the checkpoint holds {trained} state, not {spec.optimizer.name}", where=str(path),
                        fix="resume with the run's own optimizer; another optimizer is a new run")


def _train_loop(trainer: Trainer, records: list[RunRecord], observer: TrainObserver, first_epoch: int,
                step: int, stop: dict) -> list[dict]:
    """Epochs `first_epoch`.. of K runs whose models, optimizer, schedules and RNGs are at `step`.

    A member whose loss or gradient is not finite is marked diverged and frozen; the others go on.
    Ctrl-C or SIGTERM stops every member after the step in flight, keeping the last checkpoints."""
    spec, device, data = trainer.specs[0], trainer.device, trainer.data
    epochs, steps_per_epoch, members = spec.train.epochs, trainer.steps_per_epoch, len(records)
    weights = batch_weights(len(data.train_y), spec.train.batch_size, steps_per_epoch, device)
    alive = list(range(members))
    finals: list[dict] = [{} for _ in records]
    for record in records:
        observer.on_start(record.path, record.summary)
    try:
        for epoch in range(first_epoch, epochs + 1):
            trainer.train_mode(True)
            observer.on_epoch_start(epoch, epochs, steps_per_epoch)
            losses = torch.zeros(members, steps_per_epoch, device=device)
            healthy = torch.ones(members, steps_per_epoch, dtype=torch.bool, device=device)
            correct = torch.zeros(members, dtype=torch.int64, device=device)
            lr_rows: list[list[tuple[int, float]]] = [[] for _ in records]
            checked = 0
            for i, (xb, yb) in enumerate(trainer.batches):
                lrs = [schedule(step) for schedule in trainer.schedules]
                losses[:, i], healthy[:, i], hits = trainer.step(xb, yb, lrs)
                correct += hits
                held = trainer.lrs_held()
                for k in alive:
                    lr_rows[k].append((step, held[k]))
                step += 1
                if (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch:
                    for k, at, cause in first_faults(healthy, losses, checked, i + 1, alive):
                        del lr_rows[k][at + 1:]
                        records[k].diverged(lr_rows[k], losses[k].tolist(), epoch, float(losses[k, at]), cause)
                        trainer.freeze(k)
                        alive.remove(k)
                    if not alive:
                        raise _NoneLeft
                    checked = i + 1
                    observer.on_progress(i + 1, float(losses[alive[0], i]), lrs[alive[0]])
                if stop["signum"] is not None:
                    raise Interrupted(stop["signum"])
            if len(data.val_y):
                val_loss, val_acc = trainer.evaluate(data.val_x, data.val_y)
            else:  # data.val_size 0: no validation metrics (the spec refuses a plateau that monitors them)
                val_loss = val_acc = [None] * members
            train_loss = ((losses * weights).sum(1) / len(data.train_y)).tolist()
            correct_counts, step_losses = correct.tolist(), losses.tolist()
            for k in alive:
                trainer.schedules[k].observe(step, {"val_loss": val_loss[k], "val_acc": val_acc[k],
                                                    "train_loss": train_loss[k]})
                row = records[k].end_epoch(epoch, lr_rows[k], step_losses[k], train_loss[k], correct_counts[k],
                                           val_loss[k], val_acc[k])
                observer.on_epoch_end(row)
            states = trainer.states(epoch, step)
            save_checkpoints([records[k] for k in alive], [states[k] for k in alive])
            if stop["signum"] is not None:
                raise Interrupted(stop["signum"])
        test_loss, test_acc = (trainer.evaluate(data.test_x, data.test_y) if spec.train.test_eval
                               else ([None] * members, [None] * members))  # one train section per stack
        if stop["signum"] is not None:  # during the test evaluation: --resume evaluates again
            raise Interrupted(stop["signum"])
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


class _NoneLeft(Exception):
    """Every member diverged: the loop ends without a test evaluation."""


def first_faults(healthy: torch.Tensor, losses: torch.Tensor, start: int, end: int,
                 members: list[int]) -> list[tuple[int, int, str]]:
    """(member, step index, "loss" | "gradient") of each member's first non-finite step in [start, end):
    one host sync, which the loop makes every SYNC_EVERY steps."""
    window_ok, window_losses = healthy[members, start:end].cpu(), losses[members, start:end].cpu()
    faults = []
    for row, k in enumerate(members):
        bad = (~window_ok[row]).nonzero()
        if len(bad):
            at = int(bad[0])
            faults.append((k, start + at, "loss" if not math.isfinite(float(window_losses[row, at])) else "gradient"))
    return faults


def batch_weights(n_train: int, batch_size: int, steps_per_epoch: int, device: torch.device) -> torch.Tensor:
    """Images in each step's batch (the last one partial), to average per-step losses over the epoch."""
    weights = torch.full((steps_per_epoch,), float(batch_size), device=device)
    weights[-1] = n_train - batch_size * (steps_per_epoch - 1)
    return weights
