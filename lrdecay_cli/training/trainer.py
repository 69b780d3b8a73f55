"""Trainers: K >= 1 runs in lockstep on one device, sharing model shape, optimizer kind, data and training
settings; each has its own seed, schedule and optimizer hyper-parameters. A member's checkpoint has the
same layout whichever trainer wrote it, so any run resumes under either."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from lrdecay_cli.config.spec import Spec
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.training.data import Batches, KeptSplits, default_data_root, load_splits
from lrdecay_cli.training.device import resolve_device
from lrdecay_cli.training.models import build_model
from lrdecay_cli.training.optim import build_optimizer, evaluation_point, load_member_states, member_state


def gradient_sums(grads: list[torch.Tensor], members: int | None = None) -> torch.Tensor:
    """The sum of every gradient entry (one per member where `members` is given), left on the device: finite
    exactly where every entry is (a sum beyond float range is divergence too), and cheaper than a norm."""
    if members is None:
        return torch.stack([g.sum() for g in grads]).sum()
    # summing over the trailing dims reads a gradient in whatever layout it has (no reshape copy)
    return torch.stack([g.sum(dim=tuple(range(1, g.dim()))) if g.dim() > 1 else g for g in grads]).sum(0)


def precision_context(device: torch.device, precision: str):
    """bf16 autocast where the spec asks for it; plain fp32 otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Trainer:
    """What every trainer shares: the data on the device (`kept`: the splits a sweep keeps for its trials),
    each member's data order, schedule and checkpoint state. A subclass builds its models and optimizer
    (`_build_models`), trains them (`step`, `freeze`), evaluates them (`_evaluate`) and has `model_states` /
    `load_model_state`."""

    to_model_layout = to_stack_layout = None
    """StackedTrainer's per-parameter relays of optimizer state between its memory layout and the model's."""

    def __init__(self, specs: list[Spec], kept: KeptSplits | None = None):
        first = specs[0]
        self.specs = specs
        self.device = resolve_device(first.train.device)
        where = (default_data_root(first.data.root), first.data.val_size, first.data.limit, first.data.split_seed,
                 self.device, first.data.normalize)
        self.data = kept.load(*where) if kept else load_splits(*where)
        self.orders = [torch.Generator(device=self.device).manual_seed(spec.seed) for spec in specs]
        self.batches = Batches(self.data.train_x, self.data.train_y, first.train.batch_size,
                               self.orders if len(specs) > 1 else self.orders[0])
        self.steps_per_epoch = len(self.batches)
        self.schedules = [lr_schedule(s.schedule, s.optimizer.lr, self.steps_per_epoch, s.train.epochs) for s in specs]
        self.sizes = (self.data.train_size, self.data.val_size, self.data.test_size)
        self.optimizer = self._build_models()

    def optimizer_states(self) -> list[dict]:
        """Each member's optimizer state, as torch's `state_dict` of its single run's optimizer."""
        full = self.optimizer.state_dict()
        return [member_state(full, k, self.to_model_layout) for k in range(len(self.specs))]

    def load_optimizer_states(self, states: list[dict | None]) -> None:
        load_member_states(self.optimizer, states, self.to_stack_layout)

    def lrs_held(self) -> list[float]:
        """The LR each member's optimizer group holds (what lr.csv records)."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        """Each member's mean cross-entropy and accuracy over (x, y), in eval mode, at the weights its optimizer
        evaluates (a schedule-free optimizer's average); training goes on from the weights it left."""
        with evaluation_point(self.optimizer):
            return self._evaluate(x, y)

    def states(self, epoch: int, step: int) -> list[dict]:
        """Each member's checkpoint after `epoch` epochs and `step` steps."""
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}
        return [{"epoch": epoch, "step": step, "spec": spec.model_dump(mode="json"), "model": model,
                 "optimizer": optimizer, "schedule": {"name": spec.schedule.name, "step": step,
                                                      "state": schedule.state_dict()},
                 "rng": {**rng, "order": order.get_state()}}
                for spec, model, optimizer, schedule, order
                in zip(self.specs, self.model_states(), self.optimizer_states(), self.schedules, self.orders)]

    def load_states(self, states: list[dict | None]) -> None:
        """Continue members from their checkpoints (None: a member that starts afresh)."""
        for k, state in enumerate(states):
            if state is not None:
                self.load_model_state(k, state["model"])
                self.schedules[k].load_state_dict(state["schedule"]["state"])
                self.orders[k].set_state(state["rng"]["order"])
        self.load_optimizer_states([state and state["optimizer"] for state in states])
        rng = next(state["rng"] for state in states if state is not None)  # one global RNG for the stack
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])


class SingleTrainer(Trainer):
    """One plain model: `lrdecay train`, find-lr, and a sweep's trial that trains alone."""

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
        """One optimizer step at `lrs[0]`: the loss, the `gradient_sums` (finite where the gradient was) and
        the logits, detached and left on the device as they are: the loop checks and counts them at its sync."""
        self.optimizer.param_groups[0]["lr"] = lrs[0]
        with precision_context(self.device, self.specs[0].train.precision):
            logits = self.forward(xb)
            loss = F.cross_entropy(logits, yb)
        for p in self.params:  # optimizer.zero_grad(set_to_none=True) without its profiler scope: 1/15 the time
            p.grad = None
        loss.backward()
        grad_sum = gradient_sums([p.grad for p in self.params])
        self.optimizer.step()
        return loss.detach(), grad_sum, logits.detach()

    def freeze(self, k: int) -> None:
        """A diverged member stops; one plain model has no other member to go on with."""

    @torch.no_grad()
    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
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
