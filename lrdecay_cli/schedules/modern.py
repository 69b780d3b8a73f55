"""Modern schedules from papers: inverse square root, warmup-stable-decay and REX."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.registry import ScheduleParams, monotone, register


class InverseSqrtParams(ScheduleParams):
    name: Literal["inverse_sqrt"] = "inverse_sqrt"
    warmup_steps: int = Field(
        ..., ge=1, description="linear warmup from 0; the LR peaks at lr here, then falls as 1/sqrt(t)")

    @model_validator(mode="after")
    def _one_warmup(self):
        """The generic warmup would ramp to this method's LR at t = 0, which is 0."""
        if self.warmup is not None:
            raise ValueError("inverse_sqrt has its own warmup (warmup_steps); remove warmup")
        return self


WsdShape = Literal["linear", "cosine", "1-sqrt"]


class WsdParams(ScheduleParams):
    name: Literal["wsd"] = "wsd"
    decay_fraction: float = Field(0.2, gt=0, le=1, description="share of the run, at its end, spent decaying")
    decay_shape: WsdShape = Field(
        "1-sqrt", description="linear: 1 - p, cosine: (1 + cos(pi p)) / 2, 1-sqrt: 1 - sqrt(p)")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="the LR at the last step, as a fraction of lr")
    warmup_steps: int | None = Field(None, ge=0, description="linear warmup from 0 to lr, in steps (default none)")
    warmup_fraction: float | None = Field(None, ge=0, lt=1, description="the warmup as a share of the run instead")

    @field_validator("warmup_fraction")
    @classmethod
    def _fits(cls, warmup_fraction: float | None, info: ValidationInfo) -> float | None:
        if warmup_fraction is not None and info.data.get("warmup_steps") is not None:
            raise ValueError("give warmup_steps or warmup_fraction, not both")
        decay_fraction = info.data.get("decay_fraction")
        if warmup_fraction is not None and decay_fraction is not None and warmup_fraction > 1 - decay_fraction:
            raise ValueError(f"warmup_fraction + decay_fraction ({decay_fraction}) must be at most 1")
        return warmup_fraction

    @model_validator(mode="after")
    def _one_warmup(self):
        """The generic warmup would ramp to this method's LR at t = 0, which is 0 with a warmup of its own."""
        if self.warmup is not None and (self.warmup_steps or self.warmup_fraction):
            raise ValueError("wsd has its own warmup (warmup_steps / warmup_fraction); use it or warmup, not both")
        return self


class RexParams(ScheduleParams):
    name: Literal["rex"] = "rex"
    total_iters: int | None = Field(
        None, ge=1, description="counts to decay to 0; default: the run's length. Past it the LR holds 0, as "
                                "linear's and polynomial_torch's do")


@register(InverseSqrtParams, "lr * t / warmup_steps for t < warmup_steps, then lr * sqrt(warmup_steps / t)",
          "fairseq inverse_sqrt (Vaswani et al. 2017)", breaks=lambda p, lr, total: (p.warmup_steps,))
def inverse_sqrt(p: InverseSqrtParams, lr: float, total: int):
    """The Transformer schedule, scaled to peak at lr: both pieces give lr at t = warmup_steps."""
    warmup = p.warmup_steps
    # fairseq with warmup_init_lr = 0; t / warmup at t = 0 is 0, so 1/sqrt(t) is never taken at 0.
    return lambda t: lr * t / warmup if t < warmup else lr * math.sqrt(warmup / t)


_DECAY_SHAPES = {
    "linear": lambda progress: 1 - progress,
    "cosine": lambda progress: 0.5 * (1 + math.cos(math.pi * progress)),
    "1-sqrt": lambda progress: 1 - math.sqrt(progress),  # Hägele et al. 2024, arXiv:2405.18392
}


def _wsd_phases(p: WsdParams, total: int) -> tuple[int, int]:
    """The warmup's and the decay's lengths in a run of `total` steps (the builder's, and its breaks')."""
    warmup = p.warmup_steps if p.warmup_steps is not None else round((p.warmup_fraction or 0) * total)
    return warmup, max(1, round(p.decay_fraction * total))


@register(WsdParams,
          "lr * t / W for t < W; lr; over the last D = decay_fraction * total steps "
          "lr * (m + (1 - m) * shape(p)), p = (t - total + D + 1) / D, m = min_lr_ratio",
          "warmup-stable-decay (MiniCPM; Hägele et al. 2024)",
          breaks=lambda p, lr, total: (_wsd_phases(p, total)[0], total - _wsd_phases(p, total)[1]))
def wsd(p: WsdParams, lr: float, total: int):
    """Constant LR for most of the run and a short cooldown at its end, reaching min_lr at the last step."""
    warmup, decay = _wsd_phases(p, total)
    if warmup + decay > total:
        raise UserError(f"warmup ({warmup}) and decay ({decay}) overlap in a run of {total}",
                        where="schedule.warmup_steps" if p.warmup_steps else "schedule.decay_fraction",
                        fix="shorten the warmup or the decay, or train longer")
    decay_start, shape, floor = total - decay, _DECAY_SHAPES[p.decay_shape], p.min_lr_ratio

    def lr_at(t: int) -> float:
        if t < warmup:
            return lr * t / warmup
        if t < decay_start:
            return lr
        # Progress counts the step itself, so that the last step of the run is at progress 1, i.e. min_lr.
        progress = min(1.0, (t - decay_start + 1) / decay)
        return lr * (floor + (1 - floor) * shape(progress))

    return lr_at


@register(RexParams, "lr * (1 - z) / (1/2 + (1 - z) / 2), z = min(t, total_iters) / total_iters",
          "REX (Chen et al. 2021, Revisiting Budgeted Training with an Improved Schedule)", breaks=monotone)
def rex(p: RexParams, lr: float, total: int):
    """Reflected exponential: near lr for longer than a line, then a steep fall to 0 at total_iters."""
    total_iters = p.total_iters or total

    def lr_at(t: int) -> float:
        left = 1 - min(t, total_iters) / total_iters
        return lr * left / (0.5 + 0.5 * left)

    return lr_at
