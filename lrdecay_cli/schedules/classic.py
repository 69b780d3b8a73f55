"""The classic decay methods: constant, step, exponential and inverse-time (1/t)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from lrdecay_cli.schedules.registry import ScheduleParams, monotone, register


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
    step_size: int = Field(10, ge=1, description="epochs (or steps) between decays")
    gamma: float = Field(0.1, gt=0, description="multiplicative factor per decay")


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
          "plain constant learning rate, or PyTorch ConstantLR", breaks=monotone)
def constant(p: ConstantParams, lr: float, total: int):
    if p.factor is None and p.total_iters is None:
        return lambda t: lr
    from lrdecay_cli.schedules.pytorch import constant_lr_factor

    factor = 1 / 3 if p.factor is None else p.factor
    total_iters = 5 if p.total_iters is None else p.total_iters
    return lambda t: lr * constant_lr_factor(t, factor, total_iters)


@register(StepParams, "lr * gamma ** floor(t / step_size)", "PyTorch StepLR", breaks=monotone)
def step(p: StepParams, lr: float, total: int):
    return lambda t: lr * p.gamma ** (t // p.step_size)


def _decay_exponent(t: int, p: ExponentialParams | InverseTimeParams) -> float:
    """Keras' `p = step / decay_steps`, floored with staircase."""
    ratio = t / p.decay_steps
    return math.floor(ratio) if p.staircase else ratio


@register(ExponentialParams, "lr * decay_rate ** (t / decay_steps)", "Keras ExponentialDecay", breaks=monotone)
def exponential(p: ExponentialParams, lr: float, total: int):
    return lambda t: lr * p.decay_rate ** _decay_exponent(t, p)


@register(InverseTimeParams, "lr / (1 + decay_rate * t / decay_steps)", "Keras InverseTimeDecay", breaks=monotone)
def inverse_time(p: InverseTimeParams, lr: float, total: int):
    return lambda t: lr / (1 + p.decay_rate * _decay_exponent(t, p))
