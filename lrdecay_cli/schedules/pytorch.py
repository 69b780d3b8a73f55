"""The methods of PyTorch's torch.optim.lr_scheduler, with PyTorch's parameter names (no torch import): each is
the closed form of the LR its scheduler sets when stepped once per count (t is `last_epoch`), which PyTorch's
chainable recursions equal up to rounding. optimizer.lr is the base LR (one_cycle's peak, cyclic's bottom, unless
max_lr / base_lr are given); an unset horizon spans the run. OneCycleLR's and CyclicLR's momentum is not cycled."""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.registry import (ScheduleParams, monotone, period_breaks, register, run_count,
                                            strictly_increasing)


class MultiStepParams(ScheduleParams):
    name: Literal["multistep"] = "multistep"
    interval: Literal["step", "epoch"] = "epoch"
    milestones: list[Annotated[int, Field(ge=1)]] | None = Field(
        None, min_length=1, description="strictly increasing counts at each of which the LR is multiplied by gamma")
    milestone_fractions: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        None, min_length=1, description="instead of milestones: strictly increasing fractions of the run (its "
                                        "length in counts, after any warmup), each at count round(f * length), "
                                        "at least 1")
    gamma: float = Field(0.1, gt=0, description="multiplicative factor per milestone")

    @field_validator("milestones", "milestone_fractions")
    @classmethod
    def _increasing(cls, milestones: list | None, info: ValidationInfo) -> list | None:
        """PyTorch counts a repeated milestone twice; here a repeat or a step back is a typo."""
        return milestones if milestones is None else strictly_increasing(milestones, info.field_name)

    @model_validator(mode="after")
    def _one_placement(self):
        if self.milestones is not None and self.milestone_fractions is not None:
            raise ValueError("give milestones or milestone_fractions, not both")
        if self.milestones is None and self.milestone_fractions is None:
            raise ValueError("give milestones (counts) or milestone_fractions (fractions of the run)")
        return self


class LinearParams(ScheduleParams):
    name: Literal["linear"] = "linear"
    interval: Literal["step", "epoch"] = "epoch"
    start_factor: float = Field(
        1.0, gt=0, le=1, description="lr multiplier at t = 0 (PyTorch's default, 1/3 rising to 1 over 5, is a "
                                     "warmup; this default decays)")
    end_factor: float = Field(0.0, ge=0, le=1, description="lr multiplier from total_iters on")
    total_iters: int | None = Field(
        None, ge=1, description="counts from start_factor to end_factor; default: the run's length")


class CosineAnnealingParams(ScheduleParams):
    name: Literal["cosine_annealing"] = "cosine_annealing"
    interval: Literal["step", "epoch"] = "epoch"
    T_max: int | None = Field(
        None, ge=1, description="counts from lr down to eta_min; default: the run's length. Past it the LR "
                                "rises again (period 2 * T_max), as PyTorch's does")
    eta_min: float = Field(0.0, ge=0, description="the LR at T_max, at most optimizer.lr")


class CosineWarmRestartsParams(ScheduleParams):
    name: Literal["cosine_warm_restarts"] = "cosine_warm_restarts"
    interval: Literal["step", "epoch"] = "epoch"
    T_0: int = Field(..., ge=1, description="length of the first period, after which the LR restarts at lr")
    T_mult: int = Field(1, ge=1, description="each period is T_mult times longer than the one before")
    eta_min: float = Field(0.0, ge=0, description="the LR that each period falls towards, at most optimizer.lr")


class OneCycleParams(ScheduleParams):
    name: Literal["one_cycle"] = "one_cycle"
    max_lr: float | None = Field(
        None, gt=0, description="the peak LR; default: optimizer.lr (given, optimizer.lr is not used, as in PyTorch)")
    total_steps: int | None = Field(
        None, ge=1, description="length of the cycle; default: the run's length, and never shorter than it")
    pct_start: float = Field(0.3, gt=0, lt=1, description="share of the cycle spent rising to max_lr")
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="shape of every phase: half cosine or line")
    div_factor: float = Field(25.0, ge=1, description="the cycle starts at max_lr / div_factor")
    final_div_factor: float = Field(
        1e4, gt=0, description="the cycle ends at max_lr / div_factor / final_div_factor")
    three_phase: bool = Field(
        False, description="fall back to the starting LR symmetrically, then to the final one (the paper's "
                           "schedule); false: fall straight from the peak to the final LR (fastai's)")

    @field_validator("three_phase")
    @classmethod
    def _room_for_three(cls, three_phase: bool, info: ValidationInfo) -> bool:
        if three_phase and info.data.get("pct_start", 0) >= 0.5:
            raise ValueError(f"three_phase needs pct_start < 0.5 (its rise and fall take 2 * pct_start of the "
                             f"cycle), got {info.data['pct_start']}")
        return three_phase


class CyclicParams(ScheduleParams):
    name: Literal["cyclic"] = "cyclic"
    base_lr: float | None = Field(
        None, gt=0, description="the bottom of the cycle, where it starts; default: optimizer.lr (given, "
                                "optimizer.lr is not used, as in PyTorch)")
    max_lr: float = Field(..., gt=0, description="the top of the cycle (its amplitude shrinks in the modes "
                                                 "other than triangular)")
    step_size_up: int = Field(2000, ge=1, description="counts from the bottom to the top")
    step_size_down: int | None = Field(None, ge=1, description="counts from the top back down; default: step_size_up")
    mode: Literal["triangular", "triangular2", "exp_range"] = Field(
        "triangular", description="amplitude: constant; halved every cycle; times gamma ** t")
    gamma: float = Field(1.0, gt=0, le=1, description="exp_range's factor on the amplitude per count")

    @field_validator("max_lr")
    @classmethod
    def _above_base(cls, max_lr: float, info: ValidationInfo) -> float:
        base_lr = info.data.get("base_lr")
        if base_lr is not None and max_lr < base_lr:
            raise ValueError(f"max_lr must be at least base_lr ({base_lr}), got {max_lr}")
        return max_lr


class PolynomialTorchParams(ScheduleParams):
    name: Literal["polynomial_torch"] = "polynomial_torch"
    interval: Literal["step", "epoch"] = "epoch"
    total_iters: int | None = Field(None, ge=1, description="counts to decay to 0; default: the run's length")
    power: float = Field(1.0, gt=0, description="exponent: 1 linear, 0.5 square root, 2 quadratic")


def constant_lr_factor(t: int, factor: float, total_iters: int) -> float:
    """PyTorch ConstantLR's multiplier on lr: factor for the first total_iters counts, then 1."""
    return factor if t < total_iters else 1.0


def _check_eta_min(eta_min: float, lr: float) -> None:
    """PyTorch allows it, and its cosine then rises from lr; in a decay it is a slip."""
    if eta_min > lr:
        raise UserError(f"eta_min ({eta_min}) is above optimizer.lr ({lr}), so the LR would rise",
                        where="schedule.eta_min", fix="lower eta_min or raise optimizer.lr")


def _milestones(p: MultiStepParams, total: int) -> list[int]:
    """The milestones as counts: given, or milestone_fractions of a run of `total` counts."""
    if p.milestones is not None:
        return p.milestones
    milestones = [run_count(fraction, total) for fraction in p.milestone_fractions]
    if len(set(milestones)) < len(milestones):
        fix = "train longer or space the fractions further apart"
        raise UserError(f"milestone_fractions {p.milestone_fractions} give the milestones {milestones} in a run of "
                        f"{total} {p.interval}s, where two coincide", where="schedule.milestone_fractions",
                        fix=f"{fix}, or count steps (interval: step)" if p.interval == "epoch" else fix)
    return milestones


# Monotone wherever the milestones fall: every drop multiplies by the same gamma.
@register(MultiStepParams, "lr * gamma ** (number of milestones <= t); milestone_fractions f: milestones at "
          "round(f * total)", "PyTorch MultiStepLR", breaks=monotone, horizon=("milestones", "milestone_fractions"))
def multistep(p: MultiStepParams, lr: float, total: int):
    """StepLR with hand-placed drops, at counts or at fractions of the run."""
    milestones = _milestones(p, total)
    return lambda t: lr * p.gamma ** bisect.bisect_right(milestones, t)


@register(LinearParams,
          "lr * (start_factor + (end_factor - start_factor) * min(t, total_iters) / total_iters)",
          "PyTorch LinearLR", breaks=monotone)
def linear(p: LinearParams, lr: float, total: int):
    """A straight line between two multiples of lr, held after total_iters."""
    total_iters = p.total_iters or total

    def lr_at(t: int) -> float:
        done = min(total_iters, t) / total_iters
        # A weighted mean, so that it ends at exactly end_factor: start + (end - start) * 1 can miss 0 by 1e-17.
        return lr * (p.start_factor * (1 - done) + p.end_factor * done)

    return lr_at


def _annealing_breaks(p: CosineAnnealingParams, lr: float, total: int, T_max: int) -> set[int]:
    """Periods of 2 * T_max, down to eta_min at T_max and back up: all the same."""
    return period_breaks(p, lr, total, lambda k: 2 * k * T_max, total // (2 * T_max), turn=T_max)


@register(CosineAnnealingParams,
          "eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2, rising again past T_max",
          "PyTorch CosineAnnealingLR", breaks=lambda p, lr, total: _annealing_breaks(p, lr, total, p.T_max or total))
def cosine_annealing(p: CosineAnnealingParams, lr: float, total: int):
    """Half a cosine from lr to eta_min; PyTorch's recursive form, stepped on, traces the full cosine."""
    _check_eta_min(p.eta_min, lr)
    T_max = p.T_max or total
    return lambda t: p.eta_min + (lr - p.eta_min) * (1 + math.cos(math.pi * t / T_max)) / 2


def _warm_restart_breaks(p: CosineWarmRestartsParams, lr: float, total: int) -> list[int] | set[int]:
    """Every period's start: with T_mult > 1 the run holds only a logarithmic number of them."""
    if p.T_mult == 1:
        return period_breaks(p, lr, total, lambda k: k * p.T_0, total // p.T_0)
    starts, length = [0], p.T_0
    while starts[-1] <= total:
        starts.append(starts[-1] + length)
        length *= p.T_mult
    return starts


@register(CosineWarmRestartsParams,
          "eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2: period i lasts T_i = T_0 * T_mult**i, "
          "T_cur counts from its start",
          "PyTorch CosineAnnealingWarmRestarts (SGDR)", breaks=_warm_restart_breaks, horizon=("T_0",))
def cosine_warm_restarts(p: CosineWarmRestartsParams, lr: float, total: int):
    """SGDR: cosine periods growing by T_mult, each restarting at lr."""
    _check_eta_min(p.eta_min, lr)

    def lr_at(t: int) -> float:
        if p.T_mult == 1:
            t_cur, t_i = t % p.T_0, p.T_0
        else:
            # Integer arithmetic, so every period starts exactly on its count (a log would round).
            t_cur, t_i = t, p.T_0
            while t_cur >= t_i:
                t_cur, t_i = t_cur - t_i, t_i * p.T_mult
        return p.eta_min + (lr - p.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2

    return lr_at


_ANNEALS = {
    "cos": lambda start, end, pct: end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1),
    "linear": lambda start, end, pct: (end - start) * pct + start,
}


@register(OneCycleParams,
          "from max_lr / div_factor up to max_lr (default: lr) over pct_start * total_steps, then down to "
          "max_lr / div_factor / final_div_factor (cos or linear); three_phase: down to max_lr / div_factor "
          "as it rose, then to the final LR",
          "PyTorch OneCycleLR (Smith & Topin, super-convergence)",
          breaks=lambda p, lr, total: [math.floor(p.pct_start * (p.total_steps or total)),
                                       math.floor(2 * p.pct_start * (p.total_steps or total)), p.total_steps or total])
def one_cycle(p: OneCycleParams, lr: float, total: int):
    """Super-convergence: one rise to a large peak and a long anneal far below the start."""
    steps = p.total_steps or total
    if steps < total:
        raise UserError(f"total_steps ({steps}) is shorter than the run ({total} {p.interval}s)",
                        where="schedule.total_steps",
                        fix=f"set total_steps to at least {total}, or leave it unset to span the run")
    peak = lr if p.max_lr is None else p.max_lr
    initial = peak / p.div_factor
    final = initial / p.final_div_factor
    # PyTorch's phases: (last count of the phase, as a float, LR at its start, LR at its end).
    rise = (float(p.pct_start * steps) - 1, initial, peak)
    if p.three_phase:
        phases = [rise, (float(2 * p.pct_start * steps) - 2, peak, initial), (steps - 1, initial, final)]
    else:
        phases = [rise, (steps - 1, peak, final)]
    anneal = _ANNEALS[p.anneal_strategy]

    def lr_at(t: int) -> float:
        # PyTorch extrapolates one count past the cycle, then raises; here the LR holds its final value.
        t = min(t, steps - 1)
        start = 0.0
        for i, (end, start_lr, end_lr) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                # A rise ending at count 0 (pct_start * total_steps == 1) has no length, and PyTorch divides
                # by zero there; count 0 is then the cycle's start, initial.
                pct = (t - start) / (end - start) if end > start else 0.0
                return anneal(start_lr, end_lr, pct)
            start = end

    return lr_at


_CYCLIC_SCALE = {
    "triangular": lambda cycle, t, gamma: 1.0,
    # PyTorch's 1 / 2.0 ** (cycle - 1), exactly, but it underflows to 0 instead of overflowing at cycle 1025.
    "triangular2": lambda cycle, t, gamma: 0.5 ** (cycle - 1),
    "exp_range": lambda cycle, t, gamma: gamma ** t,
}


def _cycle_length(p: CyclicParams) -> int:
    return p.step_size_up + (p.step_size_down or p.step_size_up)


@register(CyclicParams,
          "base_lr + (max_lr - base_lr) * triangle(t) * scale, triangle 0 -> 1 over step_size_up and back over "
          "step_size_down; scale 1 (triangular), 1 / 2 ** (cycle - 1) with cycle = 1, 2, ... (triangular2), "
          "gamma ** t (exp_range); base_lr defaults to lr",
          "PyTorch CyclicLR (Smith, cyclical learning rates)",
          # Its LR stays between base_lr and max_lr (exp_range's damped triangle need not be monotone
          # in a half cycle): the first and last cycles are looked at as for any periodic method.
          breaks=lambda p, lr, total: period_breaks(p, lr, total, lambda k: k * _cycle_length(p),
                                                    total // _cycle_length(p), turn=p.step_size_up),
          horizon=("step_size_up",))
def cyclic(p: CyclicParams, lr: float, total: int):
    """Cyclical learning rates: a triangle wave between base_lr and max_lr, optionally damped."""
    base = lr if p.base_lr is None else p.base_lr
    if p.max_lr < base:
        raise UserError(f"max_lr ({p.max_lr}) is below the cycle's bottom, optimizer.lr ({lr})",
                        where="schedule.max_lr", fix="raise max_lr, lower optimizer.lr, or set base_lr")
    total_size = float(_cycle_length(p))
    step_ratio = p.step_size_up / total_size
    scale = _CYCLIC_SCALE[p.mode]

    def lr_at(t: int) -> float:
        # PyTorch's float arithmetic, operation for operation: x is the position within the cycle (0 to 1).
        cycle = math.floor(1 + t / total_size)
        x = 1.0 + t / total_size - cycle
        triangle = x / step_ratio if x <= step_ratio else (x - 1) / (step_ratio - 1)
        return base + (p.max_lr - base) * triangle * scale(cycle, t, p.gamma)

    return lr_at


@register(PolynomialTorchParams, "lr * (1 - min(t, total_iters) / total_iters) ** power", "PyTorch PolynomialLR",
          breaks=monotone)
def polynomial_torch(p: PolynomialTorchParams, lr: float, total: int):
    """Polynomial decay to 0 at total_iters, held after (Keras' polynomial ends at end_learning_rate)."""
    total_iters = p.total_iters or total
    return lambda t: lr * (1.0 - min(total_iters, t) / total_iters) ** p.power
