"""Optimizer builders by name; the spec's field names are torch.optim's keyword arguments."""

from __future__ import annotations

from typing import Iterable

import torch

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta,
}


def build_optimizer(spec, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """`spec.lr` is the initial LR; the schedule overwrites every param group's lr before each step."""
    kwargs = spec.model_dump(exclude={"name"})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return OPTIMIZERS[spec.name](params, **kwargs)
