"""Registry of decay methods and the one place where `interval: step | epoch` is resolved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict

LrAt = Callable[[int], float]
"""A schedule: the learning rate (float64) for a count of steps or epochs, counted from 0."""


class ScheduleParams(BaseModel):
    """Base of every method's parameters: `name` picks the method, `interval` what it counts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_assignment=True)

    name: str
    interval: Literal["step", "epoch"] = "step"


@dataclass(frozen=True)
class Method:
    name: str
    params: type[ScheduleParams]
    build: Callable[[ScheduleParams, float, int], LrAt]
    formula: str
    origin: str


METHODS: dict[str, Method] = {}


def register(params: type[ScheduleParams], formula: str, origin: str):
    """Decorator: add a builder `(params, initial_lr, total) -> lr_at` to the catalogue.

    `total` is the length of the run in the method's own unit (steps, or epochs with
    `interval: epoch`), for methods whose horizon defaults to the run (one_cycle, wsd, ...).
    """

    name = params.model_fields["name"].default

    def add(build: Callable[[ScheduleParams, float, int], LrAt]):
        METHODS[name] = Method(name, params, build, formula, origin)
        return build

    return add


def lr_schedule(params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int) -> LrAt:
    """The LR for every optimizer step: methods on `interval: epoch` change only at epoch boundaries."""
    total = epochs if params.interval == "epoch" else epochs * steps_per_epoch
    lr_at = METHODS[params.name].build(params, initial_lr, total)
    if params.interval == "epoch":
        return lambda step: lr_at(step // steps_per_epoch)
    return lr_at
