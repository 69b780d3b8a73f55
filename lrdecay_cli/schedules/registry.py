"""Registry of decay methods, and the one place where `interval` and `warmup` are resolved: a builder's pure
`t -> lr` of its own count becomes a `Schedule` over optimizer steps. Each method declares its `breaks`, the
counts between which its LR is monotone, so `check_run` judges a whole run from a few LRs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LrAt = Callable[[int], float]
"""A schedule: the learning rate (float64) for a count of steps or epochs, counted from 0."""
Breaks = Callable[[Any, float, int], Iterable[int]]
"""`(params, initial_lr, total) -> counts` where a method's LR may turn (see `Method.breaks`)."""


class Warmup(BaseModel):
    """A ramp in front of any method, from start_factor x the method's first LR up to that LR."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

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
    """Base of every method's parameters: `name` picks the method, `interval` what it counts. Strict."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

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
    breaks: Breaks
    """The counts where the LR may turn (piece, phase or period starts): a short list, however long the run."""
    horizon: tuple[str, ...] = ()
    """The parameters that set when its LR first changes (the first one set counts): what a flat run's warning names."""
    unchanging: bool = False
    """Its LR stays put by design (constant) or follows a metric (plateau): a flat run is no slip."""

    def parameters(self) -> dict[str, Any]:
        """The method's own parameters and their defaults (not name, interval, warmup)."""
        return {k: f.default for k, f in self.params.model_fields.items() if k not in ScheduleParams.model_fields}


METHODS: dict[str, Method] = {}


def strictly_increasing(values: list, what: str) -> list:
    """Boundaries, milestones: a repeat or a step back is a typo, refused with the list shown."""
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{what} must be strictly increasing, got {values}")
    return values


def run_count(fraction: float, total: int) -> int:
    """A fraction of the run as a count (step_fraction, milestone_fractions): the nearest count to
    fraction * total (Python's round, halves to even), and at least 1."""
    return max(1, round(fraction * total))


def monotone(p: ScheduleParams, initial_lr: float, total: int) -> tuple[int, ...]:
    """`breaks` of a method whose LR only falls, or only rises, over any run."""
    return ()


def period_breaks(p: ScheduleParams, initial_lr: float, total: int, start: Callable[[int], int], last: int,
                  turn: int = 0) -> set[int]:
    """`breaks` of a method whose period k (0..`last`) starts at `start(k)` and turns `turn` counts in, with
    the LR at a place of a period monotone in k: the first two and last two periods bound all others, and
    the period where the LR first falls below TINIEST_LR is found by bisection over k."""
    lr_at = METHODS[p.name].build(p, initial_lr, total)
    periods = {0, 1, 2, last - 1, last, last + 1}
    if last > 2:
        for place in (offset + d for offset in {0, turn} for d in (-1, 0, 1, 2)):
            def tiny(k: int) -> bool:
                return lr_at(max(start(k) + place, 0)) < TINIEST_LR

            if tiny(1) != tiny(last):
                k = first_change(tiny, 1, last)
                periods.update((k - 1, k))
    return {start(k) + offset for k in periods if k >= 0 for offset in {0, turn}}


def first_change(predicate: Callable[[int], bool], low: int, high: int) -> int:
    """The least k in (low, high] with predicate(k) != predicate(low), for a predicate that changes once."""
    before = predicate(low)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if predicate(middle) == before else (low, middle)
    return high


def register(params: type[ScheduleParams], formula: str, origin: str, breaks: Breaks, horizon: tuple[str, ...] = (),
             unchanging: bool = False):
    """Decorator: add a builder `(params, initial_lr, total) -> lr_at` to the catalogue; `total` is the run's
    length in the method's own unit (steps, or epochs with `interval: epoch`)."""

    name = params.model_fields["name"].default

    def add(build: Callable[[ScheduleParams, float, int], LrAt]):
        METHODS[name] = Method(name, params, build, formula, origin, breaks, horizon, unchanging)
        return build

    return add


class Schedule:
    """The LR for every optimizer step of one run; `observe` feeds metric-driven methods."""

    def __init__(self, params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int):
        self.params, self.initial_lr = params, initial_lr
        self.warmup_steps = params.warmup.length(steps_per_epoch) if params.warmup else 0
        self.unit = steps_per_epoch if params.interval == "epoch" else 1
        self.total = max(max(epochs * steps_per_epoch - self.warmup_steps, 0) // self.unit, 1)
        self.method = METHODS[params.name].build(params, initial_lr, self.total)
        self.metric_driven = hasattr(self.method, "observe")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.method(0) * self.params.warmup.factor(step, self.warmup_steps)
        return self.method((step - self.warmup_steps) // self.unit)

    def breaks(self) -> list[int]:
        """Optimizer steps where the LR may turn: the warmup's end and the method's own breaks."""
        counts = METHODS[self.params.name].breaks(self.params, self.initial_lr, self.total)
        return [self.warmup_steps, *(self.warmup_steps + count * self.unit for count in counts)]

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
LARGEST_LR = 3.4028234663852886e38
"""float32's largest value (bf16's too): above it the LR is infinite where the optimizer applies it."""


def check_run(params: ScheduleParams, initial_lr: float, steps_per_epoch: int, epochs: int) -> None:
    """Refuse, before training, a schedule whose LRs over the run are NaN, beyond float32, negative or below
    TINIEST_LR. The LR is monotone between breaks, so each piece is judged by its ends and, where it reaches 0,
    its last positive LR (by bisection); an every-step scan of 100,000 epochs at batch 1 took over half an hour."""
    schedule = lr_schedule(params, initial_lr, steps_per_epoch, epochs)
    last = epochs * steps_per_epoch - 1
    # Each break and its neighbours start a piece, so a turn that a break's rounding puts a step off is caught.
    starts = sorted({0, *(step for b in schedule.breaks() for step in range(b - 1, b + 3) if 0 < step <= last)})
    for start, end in zip(starts, [step - 1 for step in starts[1:]] + [last]):
        if (_sane_lr(schedule, start) == 0) != (_sane_lr(schedule, end) == 0):
            # It reaches 0 inside: bisect to the edge of its zeros, where its smallest positive LR is.
            first_change(lambda step: _sane_lr(schedule, step) == 0, start, end)


def _sane_lr(schedule: Schedule, step: int) -> float:
    """The LR at `step`, or a ValueError saying what is wrong with it there."""
    try:
        lr = schedule(step)
    except OverflowError:
        raise ValueError(f"the LR overflows at step {step} of this run; check the schedule's parameters") from None
    except (ArithmeticError, ValueError) as exc:
        raise ValueError(f"the LR cannot be computed at step {step} of this run ({exc}); "
                         f"check the schedule's parameters") from None
    if not math.isfinite(lr) or lr < 0 or 0 < lr < TINIEST_LR or lr > LARGEST_LR:
        what = "underflows to" if 0 < lr < TINIEST_LR else "is"
        beyond = f", more than float32 holds ({LARGEST_LR:.3g})" if math.isfinite(lr) and lr > LARGEST_LR else ""
        raise ValueError(f"the LR {what} {lr!r} at step {step} of this run{beyond}; check the schedule's parameters")
    return lr
