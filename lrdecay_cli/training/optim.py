"""Optimizers by name: torch.optim's own classes (the spec's fields are their keyword arguments), one param
group per model, so a stack of K models is one optimizer of K groups and every optimizer's math is torch's."""

from __future__ import annotations

import torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
}
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
    return cls(groups, **fused)


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
