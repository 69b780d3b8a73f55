"""Optimizers by name: torch.optim's own classes and the `schedulefree` package's (the spec's fields are their
keyword arguments), one param group per model, so a stack of K models is one optimizer of K groups and every
optimizer's math is its library's."""

from __future__ import annotations

import contextlib

import schedulefree
import torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
    "sgd_schedulefree": schedulefree.SGDScheduleFree,
    "adamw_schedulefree": schedulefree.AdamWScheduleFree,
}
SCHEDULE_FREE = (schedulefree.SGDScheduleFree, schedulefree.AdamWScheduleFree)
"""Optimizers that train at one point (the package's y) and are evaluated at another (x, an average of the
iterates): `evaluation_point` moves the weights there. They are kept in train mode everywhere else, checkpoints
too, and keep their own `warmup_steps` at 0 (the schedule's warmup sets their LR)."""
FUSED = ("sgd", "adam", "adamw")
"""Optimizers with torch's fused kernels (one call per param group instead of a few per tensor)."""


def hyper_parameters(spec) -> dict:
    """A spec's optimizer section as torch.optim keyword arguments (`spec.lr` is the initial LR)."""
    kwargs = spec.model_dump(exclude={"name"})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return kwargs


def build_optimizer(specs: list, members: list[list[torch.Tensor]]) -> torch.optim.Optimizer:
    """One optimizer for `members` (each a model's parameters) of one kind, member k with `specs[k]`'s
    hyper-parameters; the schedule overwrites every group's lr before each step."""
    cls = OPTIMIZERS[specs[0].name]
    device = members[0][0].device
    fused = {"fused": True} if specs[0].name in FUSED and device.type in ("cpu", "cuda") else {}
    groups = [{"params": params, **hyper_parameters(spec)} for spec, params in zip(specs, members)]
    optimizer = cls(groups, **fused)
    if isinstance(optimizer, SCHEDULE_FREE):
        optimizer.train()  # the package starts in eval mode and refuses to step there
    return optimizer


@contextlib.contextmanager
def evaluation_point(optimizer: torch.optim.Optimizer):
    """Within it, the optimizer's parameters are where it evaluates: a schedule-free optimizer's average x (its
    `eval()`); other optimizers' stay as they are. After it the training point y is put back bit for bit: the
    package's `train()` recomputes y from x and z with a rounding, so each evaluation would nudge the training."""
    if not isinstance(optimizer, SCHEDULE_FREE):
        yield
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    kept = [p.detach().clone() for p in params]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        with torch.no_grad():
            for p, y in zip(params, kept):
                p.copy_(y)


def member_state(full: dict, k: int, relay: list | None = None) -> dict:
    """Member k's part of a stacked optimizer's `state_dict()` as its single run would have it; `relay[i]`
    (where not None) turns parameter i's state tensors from the stack's memory layout into the model's."""
    group = full["param_groups"][k]
    ids = group["params"]
    return {"state": {i: _relaid(full["state"][pid], relay and relay[i]) for i, pid in enumerate(ids)
                      if pid in full["state"]},
            "param_groups": [{**group, "params": list(range(len(ids)))}]}


def load_member_states(optimizer: torch.optim.Optimizer, states: list[dict | None], relay: list | None = None) -> None:
    """Load single-run optimizer `state_dict`s into a stacked optimizer's members (None: a member that starts
    afresh keeps its group and empty state); `relay[i]` turns parameter i's state into the stack's layout."""
    current = optimizer.state_dict()
    full: dict = {"state": {}, "param_groups": []}
    for k, state in enumerate(states):
        ids = current["param_groups"][k]["params"]
        if state is None:
            full["param_groups"].append(current["param_groups"][k])
            continue
        (group,) = state["param_groups"]
        full["param_groups"].append({**group, "params": ids})
        full["state"].update({ids[i]: _relaid(value, relay and relay[i]) for i, value in state["state"].items()})
    optimizer.load_state_dict(full)


def _relaid(param_state: dict, relay) -> dict:
    """One parameter's optimizer state with its parameter-shaped tensors (buffers, not `step`) relaid."""
    if relay is None:
        return param_state
    return {name: relay(v) if isinstance(v, torch.Tensor) and v.dim() else v for name, v in param_state.items()}
