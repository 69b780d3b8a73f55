"""The methods of keras.optimizers.schedules, with Keras' parameter names, written out from Keras 3
(keras/src/optimizers/schedules/learning_rate_schedule.py) in float64 and in Keras' order of operations.
`initial_learning_rate` is optimizer.lr (piecewise_constant takes `values`); an unset `decay_steps` spans the run."""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.registry import ScheduleParams, period_breaks, register, strictly_increasing


class PolynomialParams(ScheduleParams):
    name: Literal["polynomial"] = "polynomial"
    decay_steps: int | None = Field(
        None, ge=1, description="steps to reach end_learning_rate; default: the run's length")
    end_learning_rate: float = Field(0.0001, ge=0, description="the LR from decay_steps on")
    power: float = Field(1.0, gt=0, description="exponent: 1 linear, 0.5 square root, 2 quadratic")
    cycle: bool = Field(False, description="past decay_steps, decay again to the next multiple of decay_steps "
                                           "(the LR jumps up at each multiple)")


class PiecewiseConstantParams(ScheduleParams):
    name: Literal["piecewise_constant"] = "piecewise_constant"
    boundaries: list[Annotated[int, Field(ge=0)]] = Field(
        ..., min_length=1, description="strictly increasing counts; values[i] holds up to and including boundaries[i]")
    values: list[Annotated[float, Field(ge=0)]] = Field(
        ..., description="the LRs themselves (optimizer.lr is not used), one more than boundaries")

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, boundaries: list[int]) -> list[int]:
        return strictly_increasing(boundaries, "boundaries")

    @field_validator("values")
    @classmethod
    def _one_more_than_boundaries(cls, values: list[float], info: ValidationInfo) -> list[float]:
        boundaries = info.data.get("boundaries")
        if boundaries is not None and len(values) != len(boundaries) + 1:
            raise ValueError(f"{len(boundaries)} boundaries need {len(boundaries) + 1} values, got {len(values)}")
        return values


class CosineParams(ScheduleParams):
    name: Literal["cosine"] = "cosine"
    decay_steps: int | None = Field(
        None, ge=1, description="steps of cosine decay after the warmup; default: the rest of the run")
    alpha: float = Field(0.0, ge=0, le=1, description="the final LR as a fraction of the decay's starting LR")
    warmup_target: float | None = Field(
        None, gt=0, description="LR reached by a linear warmup from optimizer.lr; unset: no warmup, decay from lr")
    warmup_steps: int = Field(0, ge=0, description="steps of the warmup to warmup_target")

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_needs_target(cls, warmup_steps: int, info: ValidationInfo) -> int:
        """Keras silently skips a warmup without warmup_target; here that is an error, not a no-op."""
        if warmup_steps > 0 and info.data.get("warmup_target", 0) is None:
            raise ValueError("warmup_steps needs warmup_target, the LR to warm up to")
        return warmup_steps

    @model_validator(mode="after")
    def _one_warmup(self):
        """Two warmups in a row would ramp twice (the generic one up to lr, then Keras' to warmup_target)."""
        if self.warmup is not None and self.warmup_steps:
            raise ValueError("cosine has its own warmup (warmup_steps / warmup_target); use it or warmup, not both")
        return self


class CosineRestartsParams(ScheduleParams):
    name: Literal["cosine_restarts"] = "cosine_restarts"
    first_decay_steps: int = Field(..., ge=1, description="length of the first cosine period")
    t_mul: float = Field(2.0, ge=1, description="each period is t_mul times longer than the one before "
                                                "(below 1 the periods sum to a finite length, after which Keras' "
                                                "formula is undefined)")
    m_mul: float = Field(1.0, gt=0, description="each period starts at m_mul times the previous period's peak")
    alpha: float = Field(0.0, ge=0, le=1, description="the LR at the end of every period, as a fraction of lr")


def _cycle_breaks(p: PolynomialParams, lr: float, total: int, decay_steps: int) -> set[int]:
    """Each cycle decays from a lower LR than the one before (to the same end), so it is monotone in the cycle."""
    return period_breaks(p, lr, total, lambda k: k * decay_steps, total // decay_steps)


@register(PolynomialParams,
          "(lr - end_learning_rate) * (1 - min(t, D) / D) ** power + end_learning_rate, D = decay_steps; "
          "cycle: D * max(1, ceil(t / D)) and no min",
          "Keras PolynomialDecay",
          breaks=lambda p, lr, total: _cycle_breaks(p, lr, total, p.decay_steps or total) if p.cycle else ())
def polynomial(p: PolynomialParams, lr: float, total: int):
    """Decay to end_learning_rate over decay_steps, then hold it (or, with cycle, decay again)."""
    decay_steps = p.decay_steps or total

    def lr_at(t: int) -> float:
        if p.cycle:
            # Keras' multiplier: ceil(t / decay_steps), and 1 at t = 0. Integer ceil: exact at any t.
            fraction = t / (decay_steps * max(1, -(-t // decay_steps)))
        else:
            fraction = min(t, decay_steps) / decay_steps
        return (lr - p.end_learning_rate) * (1 - fraction) ** p.power + p.end_learning_rate

    return lr_at


@register(PiecewiseConstantParams,
          "values[i] for boundaries[i-1] < t <= boundaries[i] (LRs from values, not optimizer.lr)",
          "Keras PiecewiseConstantDecay", breaks=lambda p, lr, total: p.boundaries, horizon=("boundaries",))
def piecewise_constant(p: PiecewiseConstantParams, lr: float, total: int):
    """Fixed LRs between boundaries; a boundary itself still belongs to the piece before it."""
    return lambda t: p.values[bisect.bisect_left(p.boundaries, t)]


@register(CosineParams,
          "lr + (peak - lr) * t / W for t < W = warmup_steps, then peak * ((1 - alpha) * (1 + cos(pi * "
          "min(t - W, decay_steps) / decay_steps)) / 2 + alpha), peak = warmup_target or lr",
          "Keras CosineDecay", breaks=lambda p, lr, total: (p.warmup_steps,))
def cosine(p: CosineParams, lr: float, total: int):
    """Optional linear warmup to warmup_target, then a half cosine down to alpha x the peak, held after."""
    warmup = p.warmup_steps
    decay_steps = p.decay_steps or total - warmup
    if decay_steps < 1:
        raise UserError(f"warmup_steps ({warmup}) leaves no steps to decay in a run of {total}",
                        where="schedule.warmup_steps", fix="shorten the warmup, set decay_steps, or train longer")
    peak = lr if p.warmup_target is None else p.warmup_target

    def lr_at(t: int) -> float:
        t = min(t, decay_steps + warmup)
        if t < warmup:
            return (p.warmup_target - lr) * (t / warmup) + lr
        fraction = (t - warmup) / decay_steps
        return peak * ((1 - p.alpha) * (0.5 * (1.0 + math.cos(math.pi * fraction))) + p.alpha)

    return lr_at


def _period(fraction: float, t_mul: float) -> tuple[int, float]:
    """The restart index i and the completed fraction of period i, at t / first_decay_steps = `fraction`."""
    if t_mul == 1.0:
        i = math.floor(fraction)
        return i, fraction - i
    # Keras: i = floor(log(1 - fraction * (1 - t_mul)) / log(t_mul)), periods summing to (1 - t_mul**i) / (1 - t_mul).
    i = math.floor(math.log(1.0 - fraction * (1.0 - t_mul)) / math.log(t_mul))
    # At a period's first step the log ratio can round to just below an integer (log(1000) / log(10) is
    # 2.9999999999999996), where Keras ends the previous period one step late: check i against the sums.
    if (1.0 - t_mul ** (i + 1)) / (1.0 - t_mul) <= fraction:
        i += 1
    elif (1.0 - t_mul ** i) / (1.0 - t_mul) > fraction:
        i -= 1
    return i, (fraction - (1.0 - t_mul ** i) / (1.0 - t_mul)) / t_mul ** i


MAX_RESTARTS = 10_000
"""The most periods of `cosine_restarts` with t_mul > 1 that a run's check looks at one by one (a third
of a second): t_mul = 2 makes 33 in the longest run allowed, only a t_mul within 1e-3 of 1 makes more."""


def _restart_breaks(p: CosineRestartsParams, lr: float, total: int) -> list[int] | set[int]:
    """Period starts: with t_mul = 1 the periods are alike but for m_mul ** i; else each period's start falls
    between two counts, so all of them, a number that grows as log(run) / log(t_mul)."""
    first = p.first_decay_steps
    if p.t_mul == 1.0:
        return period_breaks(p, lr, total, lambda i: i * first, total // first)
    periods = _period(total / first, p.t_mul)[0] + 2
    if periods > MAX_RESTARTS:
        raise ValueError(f"t_mul {p.t_mul} makes {periods:,} restarts in this run, more than the {MAX_RESTARTS:,} "
                         f"its check looks at; raise t_mul or first_decay_steps, or set t_mul: 1")
    return [math.floor(first * (1.0 - p.t_mul ** i) / (1.0 - p.t_mul)) for i in range(periods)]


@register(CosineRestartsParams,
          "lr * ((1 - alpha) * 0.5 * m_mul**i * (1 + cos(pi * f)) + alpha): period i lasts "
          "first_decay_steps * t_mul**i, f is its completed fraction",
          "Keras CosineDecayRestarts (SGDR)", breaks=_restart_breaks, horizon=("first_decay_steps",))
def cosine_restarts(p: CosineRestartsParams, lr: float, total: int):
    """SGDR: cosine periods growing by t_mul, each restarting at m_mul x the previous peak."""

    def lr_at(t: int) -> float:
        i, fraction = _period(t / p.first_decay_steps, p.t_mul)
        cosine_decayed = 0.5 * p.m_mul ** i * (1.0 + math.cos(math.pi * fraction))
        return lr * ((1 - p.alpha) * cosine_decayed + p.alpha)

    return lr_at
