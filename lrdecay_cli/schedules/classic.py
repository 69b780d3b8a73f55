"""The classic decay methods: constant, step, exponential and inverse-time (1/t)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from lrdecay_cli.schedules.registry import ScheduleParams, monotone, register, run_count


class ConstantParams(ScheduleParams):
    name: Literal["constant"] = "constant"
    factor: float | None = Field(
        None, ge=0, le=1, description="PyTorch ConstantLR: lr * factor for the first total_iters counts, then lr; "
                                      "unset with total_iters set: 1/3, PyTorch's default")
    total_iters: int | None = Field(
        None, ge=1, description="PyTorch ConstantLR: counts at lr * factor; unset with factor set: 5, PyTorch's default")


class StepParams(ScheduleParams):
    name: Literal["step"] = "step"
    interval: Literal["step", "epoch"] = "epoch"
    step_size: int | None = Field(10, ge=1, description="epochs (or steps) between decays")
    step_fraction: float | None = Field(
        None, gt=0, le=1, description="instead of step_size: the period as a fraction of the run (its length in "
                                      "counts, after any warmup), round(f * length), at least 1; 1: no decay in the run")
    gamma: float = Field(0.1, gt=0, description="multiplicative factor per decay")

    @model_validator(mode="after")
    def _one_period(self):
        if self.step_fraction is None and self.step_size is None:
            raise ValueError("give step_size or step_fraction")
        if self.step_fraction is not None:
            if "step_size" in self.model_fields_set and self.step_size is not None:
                raise ValueError("give step_size or step_fraction, not both")
            # Unused, so None: the resolved spec writes every field, and must read back without both given.
            self.step_size = None
        return self


class ExponentialParams(ScheduleParams):
    name: Literal["exponential"] = "exponential"
    decay_steps: int = Field(1000, ge=1, description="steps over which the LR is multiplied by decay_rate")
    decay_rate: float = Field(0.96, gt=0, description="factor per decay_steps")
    staircase: bool = Field(False, description="floor(t / decay_steps): decay in discrete jumps")


class InverseTimeParams(ScheduleParams):
    name: Literal["inverse_time"] = "inverse_time"
    decay_steps: int = Field(1000, ge=1, description="steps per unit of t in the denominator")
    decay_rate: float = Field(0.5, gt=0, description="slope of the denominator")
    staircase: bool = Field(False, description="floor(t / decay_steps): decay in discrete jumps")


@register(ConstantParams, "lr; with factor or total_iters: lr * factor for t < total_iters, then lr",
          "plain constant learning rate, or PyTorch ConstantLR", breaks=monotone, unchanging=True)
def constant(p: ConstantParams, lr: float, total: int):
    if p.factor is None and p.total_iters is None:
        return lambda t: lr
    from lrdecay_cli.schedules.pytorch import constant_lr_factor

    factor = 1 / 3 if p.factor is None else p.factor
    total_iters = 5 if p.total_iters is None else p.total_iters
    return lambda t: lr * constant_lr_factor(t, factor, total_iters)


@register(StepParams, "lr * gamma ** floor(t / step_size); step_fraction f: step_size = round(f * total)",
          "PyTorch StepLR", breaks=monotone, horizon=("step_size", "step_fraction"))
def step(p: StepParams, lr: float, total: int):
    step_size = p.step_size or run_count(p.step_fraction, total)
    return lambda t: lr * p.gamma ** (t // step_size)


def _decay_exponent(t: int, p: ExponentialParams | InverseTimeParams) -> float:
    """Keras' `p = step / decay_steps`, floored with staircase."""
    ratio = t / p.decay_steps
    return math.floor(ratio) if p.staircase else ratio


@register(ExponentialParams, "lr * decay_rate ** (t / decay_steps)", "Keras ExponentialDecay", breaks=monotone,
          horizon=("decay_steps",))
def exponential(p: ExponentialParams, lr: float, total: int):
    return lambda t: lr * p.decay_rate ** _decay_exponent(t, p)


@register(InverseTimeParams, "lr / (1 + decay_rate * t / decay_steps)", "Keras InverseTimeDecay", breaks=monotone,
          horizon=("decay_steps",))
def inverse_time(p: InverseTimeParams, lr: float, total: int):
    return lambda t: lr / (1 + p.decay_rate * _decay_exponent(t, p))
