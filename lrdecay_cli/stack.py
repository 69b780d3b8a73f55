"""K models trained as one on one device: torch.func's `stack_module_state` + `functional_call` +
`vmap` over the same model classes (`build_model`), and one torch.optim optimizer whose K param
groups are the members (optim.py), so each member keeps its own LR, hyper-parameters, initial
weights and data order while the stack does K models' work as larger tensor operations.

`StackedTrainer` is a `train.Trainer`: the same loop trains it, and each member's checkpoint is the
file its single run would write. Dropout draws different masks per member (vmap randomness=
"different"), so with dropout a member agrees with its single run only in distribution.
"""

from __future__ import annotations

import copy
import json

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from lrdecay_cli.data import Batches
from lrdecay_cli.models import build_model
from lrdecay_cli.optim import build_optimizer
from lrdecay_cli.spec import Spec
from lrdecay_cli.train import Trainer, gradients_finite, precision_context


def stack_key(spec: Spec) -> str | None:
    """Runs with equal keys can train as one stack (they share everything but the seed, schedule,
    optimizer hyper-parameters and TensorBoard events); None: this run trains alone (torch.compile)."""
    if spec.train.compile:
        return None
    shared = {"model": spec.model.model_dump(), "optimizer": spec.optimizer.name, "data": spec.data.model_dump(),
              "train": spec.train.model_dump(exclude={"tensorboard"})}
    return json.dumps(shared, sort_keys=True)


class StackedTrainer(Trainer):
    """K >= 2 runs with one `stack_key` as one stacked model; a diverged member is frozen (its
    parameters get no gradient, so the optimizer skips them) while the others go on."""

    def _build_models(self) -> torch.optim.Optimizer:
        models = []
        for spec in self.specs:  # the same seed-derived initial weights as each run's single model
            torch.manual_seed(spec.seed)
            models.append(build_model(spec.model).to(self.device))
        self.params, self.buffers = stack_module_state(models)
        self.stacked = list(self.params.values())
        self.skeleton = copy.deepcopy(models[0]).to("meta")

        def forward_one(params, buffers, x):
            return functional_call(self.skeleton, (params, buffers), (x,))

        self.forward_train = vmap(forward_one, randomness="different")
        self.forward_eval = vmap(forward_one, in_dims=(0, 0, None), randomness="different")
        # member k's parameters: views into the stacked tensors, updated in place by the optimizer
        self.members = [[p.detach()[k] for p in self.stacked] for k in range(len(self.specs))]
        self.frozen: set[int] = set()
        return build_optimizer([spec.optimizer for spec in self.specs], self.members)

    def train_mode(self, on: bool) -> None:
        self.skeleton.train(on)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, lrs: list[float]) -> tuple[torch.Tensor, ...]:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        count = len(self.specs)
        with precision_context(self.device, self.specs[0].train.precision):
            logits = self.forward_train(self.params, self.buffers, xb)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), reduction="none").view(count, -1).mean(1)
        grads = torch.autograd.grad(losses.sum(), self.stacked)
        healthy = torch.isfinite(losses.detach()) & gradients_finite(grads, count)
        # torch.optim's kernels expect a gradient laid out like its parameter (the layout autograd's own
        # accumulation guarantees); a stacked weight's gradient can come out transposed
        grads = [g if g.stride() == p.stride() else p.new_empty(p.shape).copy_(g) for p, g in zip(self.stacked, grads)]
        for k, member in enumerate(self.members):
            if k not in self.frozen:
                for param, grad in zip(member, grads):
                    param.grad = grad[k]
        self.optimizer.step()
        return losses.detach(), healthy, (logits.argmax(-1) == yb).sum(1)

    def freeze(self, k: int) -> None:
        self.frozen.add(k)
        for param in self.members[k]:
            param.grad = None

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        self.train_mode(False)
        count = len(self.specs)
        loss_sum = torch.zeros(count, dtype=torch.float64, device=x.device)
        correct = torch.zeros(count, dtype=torch.int64, device=x.device)
        for xb, yb in Batches(x, y, self.specs[0].train.eval_batch_size, shuffle=False):
            with precision_context(x.device, self.specs[0].train.precision):
                logits = self.forward_eval(self.params, self.buffers, xb).float()
            loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.repeat(count), reduction="none").view(count, -1).sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        return (loss_sum / len(y)).tolist(), (correct.double() / len(y)).tolist()

    def model_states(self) -> list[dict]:
        tensors = {**self.params, **self.buffers}
        return [{name: t[k].detach().clone() for name, t in tensors.items()} for k in range(len(self.specs))]

    @torch.no_grad()
    def load_model_state(self, k: int, state: dict) -> None:
        tensors = {**self.params, **self.buffers}
        if set(state) != set(tensors):
            raise ValueError(f"the checkpoint's model has the tensors {sorted(state)}, this stack {sorted(tensors)}")
        for name, t in tensors.items():
            t[k].copy_(state[name])
