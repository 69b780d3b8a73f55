"""K models trained as one on one device: `vmap` + `functional_call` over the same model classes, and one
torch.optim optimizer whose K param groups are the members (optim.py). Each member's checkpoint is the file
its single run would write. Dropout draws different masks per member (vmap randomness="different"), so
with dropout a member agrees with its single run only in distribution."""

from __future__ import annotations

import copy
import json

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from lrdecay_cli.config.spec import Spec
from lrdecay_cli.training.data import Batches
from lrdecay_cli.training.models import build_model
from lrdecay_cli.training.optim import build_optimizer
from lrdecay_cli.training.trainer import Trainer, gradient_sums, precision_context


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
        params, self.buffers = stack_module_state(models)
        self.names = list(params)
        self.skeleton = copy.deepcopy(models[0]).to("meta")

        def forward_one(params, buffers, x):
            return functional_call(self.skeleton, (params, buffers), (x,), tie_weights=False)  # none are tied

        self.forward_train = vmap(forward_one, randomness="different")
        self.forward_eval = vmap(forward_one, in_dims=(0, 0, None), randomness="different")
        self.stacked, self.orders_of_dims = self._in_gradient_layout(params)
        # member k's parameters: views into the stacked tensors, updated in place by the optimizer
        self.members = [[p.detach()[k] for p in self.stacked] for k in range(len(self.specs))]
        self.frozen: set[int] = set()
        self.to_model_layout, self.to_stack_layout = map(list, zip(*map(_relays, self.orders_of_dims)))
        return build_optimizer([spec.optimizer for spec in self.specs], self.members)

    def _in_gradient_layout(self, params: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], list]:
        """The stacked parameters, each stored in the memory order its gradient comes out in (a Linear's
        weight gradient under vmap is its transpose in memory), so that no step copies a gradient into
        its parameter's layout. One probe step on a real batch, RNG untouched, finds the orders."""
        index = torch.arange(self.specs[0].train.batch_size, device=self.device).expand(len(self.specs), -1)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            losses, _ = self._losses(params, self.data.train_x[index], self.data.train_y[index])
            grads = torch.autograd.grad(losses.sum(), list(params.values()))
        stacked, orders = [], []
        for p, g in zip(params.values(), grads):
            order = sorted(range(g.dim()), key=lambda d: (-g.stride(d), d))  # outermost dimension first
            moved = order != list(range(g.dim())) and order[0] == 0 and g.permute(order).is_contiguous()
            stacked.append(p.detach().permute(order).contiguous().requires_grad_() if moved else p)
            orders.append(order if moved else None)
        return stacked, orders

    def module_params(self) -> dict[str, torch.Tensor]:
        """The stacked parameters in the model's own layout (views), as functional_call takes them."""
        return {name: p if order is None else p.permute(_inverse(order))
                for name, p, order in zip(self.names, self.stacked, self.orders_of_dims)}

    def _losses(self, params: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor):
        """Each member's mean cross-entropy on its batch, and the logits."""
        with precision_context(self.device, self.specs[0].train.precision):
            logits = self.forward_train(params, self.buffers, xb)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), yb.flatten(), reduction="none")
        return losses.view(len(self.specs), -1).mean(1), logits

    def train_mode(self, on: bool) -> None:
        self.skeleton.train(on)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, lrs: list[float]) -> tuple[torch.Tensor, ...]:
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        losses, logits = self._losses(self.module_params(), xb, yb)
        grads = torch.autograd.grad(losses.sum(), self.stacked)
        grad_sums = gradient_sums(grads, len(self.specs))
        # torch.optim's kernels expect a gradient laid out like its parameter (the layout autograd's own
        # accumulation guarantees); where a batch's gradient comes out otherwise than the probe's, copy it
        grads = [g if g.stride() == p.stride() else p.new_empty(p.shape).copy_(g) for p, g in zip(self.stacked, grads)]
        for k, (member, member_grads) in enumerate(zip(self.members, zip(*(g.unbind() for g in grads)))):
            if k not in self.frozen:
                for param, grad in zip(member, member_grads):
                    param.grad = grad
        self.optimizer.step()
        return losses.detach(), grad_sums, logits.detach()

    def freeze(self, k: int) -> None:
        self.frozen.add(k)
        for param in self.members[k]:
            param.grad = None

    @torch.no_grad()
    def _evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        self.train_mode(False)
        count = len(self.specs)
        loss_sum = torch.zeros(count, dtype=torch.float64, device=x.device)
        correct = torch.zeros(count, dtype=torch.int64, device=x.device)
        for xb, yb in Batches(x, y, self.specs[0].train.eval_batch_size, shuffle=False):
            with precision_context(x.device, self.specs[0].train.precision):
                logits = self.forward_eval(self.module_params(), self.buffers, xb).float()
            loss_sum += F.cross_entropy(logits.flatten(0, 1), yb.repeat(count), reduction="none").view(count, -1).sum(1)
            correct += (logits.argmax(-1) == yb).sum(1)
        return (loss_sum / len(y)).tolist(), (correct.double() / len(y)).tolist()

    def model_states(self) -> list[dict]:
        tensors = {**self.module_params(), **self.buffers}
        return [{name: t[k].detach().clone(memory_format=torch.contiguous_format) for name, t in tensors.items()}
                for k in range(len(self.specs))]

    @torch.no_grad()
    def load_model_state(self, k: int, state: dict) -> None:
        tensors = {**self.module_params(), **self.buffers}
        if set(state) != set(tensors):
            raise ValueError(f"the checkpoint's model has the tensors {sorted(state)}, this stack {sorted(tensors)}")
        for name, t in tensors.items():
            t[k].copy_(state[name])


def _inverse(order: list[int]) -> list[int]:
    return sorted(range(len(order)), key=order.__getitem__)


def _relays(order: list[int] | None):
    """For a parameter stored in the dimension `order` (None: as the model has it), functions that turn
    one member's optimizer state tensor into the model's layout and back (None: nothing to turn)."""
    if order is None:
        return None, None
    member = [d - 1 for d in order[1:]]  # the member's dimensions, without the stack's leading one
    back = _inverse(member)
    return (lambda t: t.permute(back).contiguous()), (lambda t: t.permute(member).contiguous())
