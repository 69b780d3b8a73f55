"""Registry of decay methods, and the one place where `interval` and `warmup` are resolved.

A method's builder returns a pure function `t -> lr` of its own count (steps or epochs, from 0).
`lr_schedule` turns that into a `Schedule` over optimizer steps: it puts the warmup in front,
maps steps to epochs for `interval: epoch`, and forwards metrics to metric-driven methods
(plateau), whose builder returns a callable that also has `observe(metrics)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LrAt = Callable[[int], float]
"""A schedule: the learning rate (float64) for a count of steps or epochs, counted from 0."""


class Warmup(BaseModel):
    """A ramp in front of any method, from start_factor x the method's first LR up to that LR."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    steps: int | None = Field(None, ge=1, description="warmup length in optimizer steps")
    epochs: int | None = Field(None, ge=1, description="warmup length in epochs")
    shape: Literal["linear", "exponential"] = Field("linear", description="linear or geometric ramp")
    start_factor: float = Field(0.1, gt=0, le=1, description="LR at the first step, as a fraction of the target")

    @model_validator(mode="after")
    def _one_length(self):
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps or epochs")
        return self

    def length(self, steps_per_epoch: int) -> int:
        """Warmup length in optimizer steps."""
        return self.steps if self.steps is not None else self.epochs * steps_per_epoch

    def factor(self, step: int, length: int) -> float:
        """Fraction of the target LR at `step` < `length`."""
        progress = step / length
        if self.shape == "linear":
            return self.start_factor + (1 - self.start_factor) * progress
        return self.start_factor ** (1 - progress)


class ScheduleParams(BaseModel):
    """Base of every method's parameters: `name` picks the method, `interval` what it counts."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    interval: Literal["step", "epoch"] = Field("step", description="what t counts: optimizer steps or epochs")
    warmup: Warmup | None = Field(None, description="a warmup ramp in front of the method")


@dataclass(frozen=True)
class Method:
    name: str
    params: type[ScheduleParams]
    build: Callable[[ScheduleParams, float, int], LrAt]
    formula: str
    origin: str

    def parameters(self) -> dict[str, Any]:
        """The method's own parameters and their defaults (not name, interval, warmup)."""
        common = set(ScheduleParams.model_fields)
        return {k: f.default for k, f in self.params.model_fields.items() if k not in common}


METHODS: dict[str, Method] = {}


def strictly_increasing(values: list[int], what: str) -> list[int]:
    """Boundaries, milestones: a repeat or a step back is a typo, refused with the list shown."""
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} must be strictly increasing, got {values}")
    return values


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


class Schedule:
    """The LR for every optimizer step of one run; `observe` feeds metric-driven methods."""

    def __init__(self, params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int):
        self.params = params
        self.warmup_steps = params.warmup.length(steps_per_epoch) if params.warmup else 0
        self.unit = steps_per_epoch if params.interval == "epoch" else 1
        total = max(epochs * steps_per_epoch - self.warmup_steps, 0) // self.unit
        self.method = METHODS[params.name].build(params, initial_lr, max(total, 1))
        self.metric_driven = hasattr(self.method, "observe")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.method(0) * self.params.warmup.factor(step, self.warmup_steps)
        return self.method((step - self.warmup_steps) // self.unit)

    def observe(self, steps_done: int, metrics: dict[str, float]) -> None:
        """After an evaluation: plateau-style methods update; warmup steps are not theirs to judge."""
        if self.metric_driven and steps_done > self.warmup_steps:
            self.method.observe(metrics)

    def state_dict(self) -> dict:
        return self.method.state_dict() if self.metric_driven else {}

    def load_state_dict(self, state: dict) -> None:
        if self.metric_driven:
            self.method.load_state_dict(state)


def lr_schedule(params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int) -> Schedule:
    """The run's schedule: methods on `interval: epoch` change only at epoch boundaries."""
    return Schedule(params, initial_lr, steps_per_epoch, epochs)


TINIEST_LR = 1e-300
"""Below this a positive LR is float underflow in progress, not a rate anyone meant."""


def check_run(params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int) -> None:
    """Refuse, before training, a schedule whose LRs over the run are NaN, infinite, negative, or
    underflowing (positive but below TINIEST_LR): bad parameters, not a decay to study."""
    schedule = lr_schedule(params, initial_lr, steps_per_epoch, epochs)
    stride = steps_per_epoch if params.interval == "epoch" and not params.warmup else 1
    for step in range(0, epochs * steps_per_epoch, stride):
        lr = schedule(step)
        if not math.isfinite(lr) or lr < 0 or 0 < lr < TINIEST_LR:
            what = "underflows to" if 0 < lr < TINIEST_LR else "is"
            raise ValueError(f"the LR {what} {lr!r} at step {step} of this run; check the schedule's parameters")
