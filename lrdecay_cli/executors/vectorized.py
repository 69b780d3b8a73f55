"""Many trials at once on one device, as one stacked model (torch.func: stack_module_state +
functional_call + vmap).

Trials that share the model, optimizer kind, batch size, data, epochs, device and precision form a
group; each member keeps its own LR schedule, initial LR, optimizer hyper-parameters, seed-derived
initial weights and data order, and its own run directory (TensorBoard events included, from the
per-member step losses the stack keeps anyway) written through the same `RunRecord` as `train`.
The members use the same model classes (`build_model`) and the same schedules; only the
optimizer update is re-stated here, for stacked parameters with per-member hyper-parameters.
Dropout draws different masks per member (vmap randomness="different"), so a member's metrics
agree with a sequential run within noise, while its lr.csv is identical. A member whose loss is
not finite is frozen and marked diverged; the others go on. Groups of one, and optimizers without a
stacked update (rmsprop, adadelta, amsgrad) or `compile: true`, run sequentially.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from lrdecay_cli.data import default_data_root, load_splits
from lrdecay_cli.device import resolve_device
from lrdecay_cli.executors import OnDone, OnStart, run_trial
from lrdecay_cli.models import build_model
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import Spec
from lrdecay_cli.sweep import Trial, record_failure, resumable
from lrdecay_cli.train import (SYNC_EVERY, Diverged, RunRecord, batch_weights, first_fault, gradients_finite,
                               precision_context)

STACKED_OPTIMIZERS = ("sgd", "adam", "adamw")


def group_key(spec: Spec) -> str | None:
    """Trials with equal keys train as one stack; None: this trial runs on its own."""
    if spec.optimizer.name not in STACKED_OPTIMIZERS or getattr(spec.optimizer, "amsgrad", False) or spec.train.compile:
        return None
    shared = {"model": spec.model.model_dump(), "optimizer": spec.optimizer.name, "data": spec.data.model_dump(),
              "train": spec.train.model_dump()}
    return json.dumps(shared, sort_keys=True)


def run_vectorized(trials: list[Trial], sweep_dir: Path, on_start: OnStart, on_done: OnDone) -> None:
    groups: dict[str, list[Trial]] = defaultdict(list)
    alone = []
    for trial in trials:
        key = None if resumable(sweep_dir, trial) else group_key(trial.spec)  # resumed ones continue alone
        (alone if key is None else groups[key]).append(trial)
    for group in groups.values():
        if len(group) == 1:
            alone.extend(group)
            continue
        for trial in group:
            on_start(trial)
        try:
            summaries = train_stack(group, sweep_dir)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the whole group failed: each member says so, the sweep goes on
            message = f"{type(exc).__name__}: {exc}"
            summaries = []
            for trial in group:
                record_failure(sweep_dir, trial, message)
                summaries.append({"status": "failed", "message": message})
        for trial, summary in zip(group, summaries):
            on_done(trial, summary)
    for trial in alone:
        on_start(trial)
        on_done(trial, run_trial(trial, sweep_dir))


def _zero(value) -> bool:
    """A hyper-parameter that is 0 for every member (a shared number), so its term can be skipped."""
    return isinstance(value, float) and value == 0.0


class StackedOptimizer:
    """torch.optim's SGD, Adam and AdamW update rules (their single-tensor reference form) on
    stacked parameters [K, ...], each member with its own LR and hyper-parameters.

    Updates are in place, and a hyper-parameter that all members share stays a Python number:
    on a CPU the update's memory traffic, not the arithmetic, sets the speed.
    """

    def __init__(self, specs: list[Spec], params: dict[str, torch.Tensor]):
        self.kind = specs[0].optimizer.name
        self.device = next(iter(params.values())).device

        def column(read):
            values = [float(read(s.optimizer)) for s in specs]
            if len(set(values)) == 1:
                return values[0]
            return torch.tensor(values, dtype=torch.float32, device=self.device)

        self.weight_decay = column(lambda o: o.weight_decay)
        if self.kind == "sgd":
            self.momentum = column(lambda o: o.momentum)
            self.dampening = column(lambda o: o.dampening)
            self.nesterov = column(lambda o: o.nesterov)
        else:
            self.beta1 = column(lambda o: o.betas[0])
            self.beta2 = column(lambda o: o.betas[1])
            self.eps = column(lambda o: o.eps)
        slots = 1 if self.kind == "sgd" else 2
        self.buffers = {name: [torch.zeros_like(p) for _ in range(slots)] for name, p in params.items()}
        self.steps = 0

    @staticmethod
    def _per(value, p: torch.Tensor):
        """A shared number as it is; a per-member column shaped to broadcast over p's member axis."""
        return value if isinstance(value, float) else value.view((-1,) + (1,) * (p.dim() - 1))

    def step(self, params: dict[str, torch.Tensor], grads, lr: torch.Tensor) -> None:
        """`lr` [K]: a frozen (diverged) member gets 0 and its parameters stay where they are."""
        self.steps += 1
        with torch.no_grad():
            for (name, p), g in zip(params.items(), grads):
                member_lr = lr.view((-1,) + (1,) * (p.dim() - 1))
                if self.kind == "sgd":
                    self._sgd(self.buffers[name][0], p, g, member_lr)
                else:
                    self._adam(*self.buffers[name], p, g, member_lr)

    def _sgd(self, buf, p, g, lr):
        per = lambda v: self._per(v, p)  # noqa: E731
        if not _zero(self.weight_decay):
            g = g + per(self.weight_decay) * p
        if _zero(self.momentum):
            p.addcmul_(g, lr, value=-1)
            return
        if self.steps == 1:  # torch starts the momentum buffer at the first gradient, undamped
            buf.copy_(g)
        else:
            buf.mul_(per(self.momentum)).add_(g if _zero(self.dampening) else (1 - per(self.dampening)) * g)
        if isinstance(self.nesterov, float):
            direction = g + self.momentum * buf if self.nesterov else buf
        else:
            direction = torch.where(per(self.nesterov) > 0, g + per(self.momentum) * buf, buf)
        if not isinstance(self.momentum, float):  # members without momentum follow the plain gradient
            direction = torch.where(per(self.momentum) > 0, direction, g)
        p.addcmul_(direction, lr, value=-1)

    def _adam(self, m, v, p, g, lr):
        per = lambda x: self._per(x, p)  # noqa: E731
        if self.kind == "adamw":
            if not _zero(self.weight_decay):
                p.mul_(1 - lr * per(self.weight_decay))
        elif not _zero(self.weight_decay):
            g = g + per(self.weight_decay) * p
        beta1, beta2 = per(self.beta1), per(self.beta2)
        m.lerp_(g, 1 - beta1)
        if isinstance(self.beta2, float):
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        else:
            v.mul_(beta2).add_((1 - beta2) * g * g)
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        denom = v.sqrt().div_(correction2_sqrt).add_(per(self.eps))
        p.sub_((lr / correction1) * m / denom)

    def member_state(self, k: int) -> dict:
        return {"kind": self.kind, "steps": self.steps,
                "buffers": {name: [b[k].clone() for b in bufs] for name, bufs in self.buffers.items()}}


def train_stack(trials: list[Trial], sweep_dir: Path) -> list[dict]:
    """Train a group of compatible trials as one stacked model; one summary per trial, in order."""
    specs = [t.spec for t in trials]
    shared = specs[0]
    count = len(specs)
    device = resolve_device(shared.train.device)
    data = load_splits(default_data_root(shared.data.root), shared.data.val_size, shared.data.limit,
                       shared.data.split_seed, device)
    models = []
    for spec in specs:  # the same seed-derived initial weights as a sequential run of each trial
        torch.manual_seed(spec.seed)
        models.append(build_model(spec.model).to(device))
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")

    def forward_one(p, b, x):
        return functional_call(skeleton, (p, b), (x,))

    forward_train = vmap(forward_one, randomness="different")
    forward_eval = vmap(forward_one, in_dims=(0, 0, None), randomness="different")
    optimizer = StackedOptimizer(specs, params)
    orders = [torch.Generator(device=device).manual_seed(spec.seed) for spec in specs]
    n_train, batch_size = len(data.train_y), shared.train.batch_size
    steps_per_epoch = shared.steps_per_epoch()
    schedules = [lr_schedule(s.schedule, s.optimizer.lr, steps_per_epoch, s.train.epochs) for s in specs]
    weights = batch_weights(n_train, batch_size, steps_per_epoch, device)
    sizes = (n_train, len(data.val_y), len(data.test_y))
    records = [RunRecord(spec, sweep_dir, trial.dirname, device, steps_per_epoch, sizes)
               for spec, trial in zip(specs, trials)]
    alive = [True] * count
    active = torch.ones(count, device=device)  # 1 while a member trains, 0 once it diverged (its LR then is 0)

    def save_checkpoints(epoch: int, step: int) -> None:
        for k, record in enumerate(records):
            if not alive[k]:
                continue
            state = {
                "epoch": epoch, "step": step, "spec": specs[k].model_dump(mode="json"),
                "model": {**{n: p[k].detach().clone() for n, p in params.items()},
                          **{n: b[k].clone() for n, b in buffers.items()}},
                "optimizer": optimizer.member_state(k),
                "schedule": {"name": specs[k].schedule.name, "step": step, "state": schedules[k].state_dict()},
                "rng": {"order": orders[k].get_state()},
            }
            record.run.write_checkpoint(lambda f, state=state: torch.save(state, f))

    @torch.no_grad()
    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        skeleton.eval()
        loss_sum = torch.zeros(count, dtype=torch.float64, device=device)
        correct = torch.zeros(count, dtype=torch.int64, device=device)
        for start in range(0, len(y), shared.train.eval_batch_size):
            xb, yb = x[start:start + shared.train.eval_batch_size], y[start:start + shared.train.eval_batch_size]
            with precision_context(device, shared.train.precision):
                logits = forward_eval(params, buffers, xb).float()
            loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.repeat(count), reduction="none").view(count, -1).sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        skeleton.train()
        return (loss_sum / len(y)).tolist(), (correct.double() / len(y)).tolist()

    save_checkpoints(0, 0)
    step = 0
    finals: list[dict] = [{} for _ in specs]
    try:
        for epoch in range(1, shared.train.epochs + 1):
            skeleton.train()
            perms = torch.stack([torch.randperm(n_train, generator=g, device=device) for g in orders])
            losses = torch.zeros(count, steps_per_epoch, device=device)
            healthy = torch.ones(count, steps_per_epoch, dtype=torch.bool, device=device)
            correct = torch.zeros(count, dtype=torch.int64, device=device)
            lr_rows: list[list[tuple[int, float]]] = [[] for _ in specs]
            checked = 0
            for i in range(steps_per_epoch):
                index = perms[:, i * batch_size:(i + 1) * batch_size]
                xb, yb = data.train_x[index], data.train_y[index]
                lr_values = [schedule(step) for schedule in schedules]
                with precision_context(device, shared.train.precision):
                    logits = forward_train(params, buffers, xb)
                    loss_each = F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), reduction="none")
                    loss_each = loss_each.view(count, -1).mean(1)
                grads = torch.autograd.grad(loss_each.sum(), list(params.values()))
                healthy[:, i] = torch.isfinite(loss_each.detach()) & gradients_finite(grads, count)
                optimizer.step(params, grads, torch.tensor(lr_values, dtype=torch.float32, device=device) * active)
                losses[:, i] = loss_each.detach()
                correct += (logits.argmax(-1) == yb).sum(1)
                for k in range(count):
                    if alive[k]:
                        lr_rows[k].append((step, lr_values[k]))
                step += 1
                if (i + 1) % SYNC_EVERY == 0 or i + 1 == steps_per_epoch:
                    window = slice(checked, i + 1)
                    healthy_now, losses_now = healthy[:, window].cpu(), losses[:, window].cpu()  # one sync
                    for k in range(count):
                        fault = first_fault(healthy_now[k], losses_now[k], 0, i + 1 - checked) if alive[k] else None
                        if fault is not None:
                            at, cause = checked + fault[0], fault[1]
                            del lr_rows[k][at + 1:]
                            exc = Diverged(lr_rows[k][at][0], epoch, lr_rows[k][at][1], float(losses[k, at]), cause)
                            records[k].diverged(lr_rows[k], losses[k], exc)
                            alive[k] = False
                            active[k] = 0.0
                    checked = i + 1
            if not any(alive):
                break
            val_loss, val_acc = evaluate(data.val_x, data.val_y)
            train_loss = ((losses * weights).sum(1) / n_train).tolist()
            correct_list = correct.tolist()
            for k in range(count):
                if alive[k]:
                    schedules[k].observe(step, {"val_loss": val_loss[k], "val_acc": val_acc[k]})
                    records[k].end_epoch(epoch, lr_rows[k], losses[k], train_loss[k], correct_list[k], val_loss[k],
                                         val_acc[k])
            save_checkpoints(epoch, step)
        if any(alive):
            test_loss, test_acc = evaluate(data.test_x, data.test_y)
            for k in range(count):
                if alive[k]:
                    finals[k] = {"status": "completed", "test_loss": test_loss[k], "test_acc": test_acc[k]}
    except KeyboardInterrupt:
        finals = [{"status": "interrupted", "message": "interrupted by the user"} if alive[k] else {}
                  for k in range(count)]
        raise
    except Exception as exc:
        finals = [{"status": "failed", "message": f"{type(exc).__name__}: {exc}"} if alive[k] else {}
                  for k in range(count)]
        raise
    finally:
        summaries = [record.close(**final) for record, final in zip(records, finals)]
    return summaries
