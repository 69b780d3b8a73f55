"""Composition: `sequence`, phases of other methods joined at boundaries (SequentialLR, optax.join_schedules).
Imported after every other family, so its phases may be any method registered before it."""

from __future__ import annotations

import bisect
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from lrdecay_cli.schedules.registry import METHODS, ScheduleParams, register, strictly_increasing

_PHASE_METHODS = tuple(m.params for name, m in METHODS.items() if name != "plateau")
Phase = Annotated[Union[_PHASE_METHODS], Field(discriminator="name")]


class SequenceParams(ScheduleParams):
    name: Literal["sequence"] = "sequence"
    phases: list[Phase] = Field(..., min_length=1, description="methods, each counting its own steps from 0")
    boundaries: list[Annotated[int, Field(ge=1)]] = Field(
        ..., description="where each phase after the first starts, in the sequence's interval")

    @model_validator(mode="before")
    @classmethod
    def _phases_count_like_the_sequence(cls, data: Any) -> Any:
        """Phases share the sequence's interval, so boundaries and phase counts mean the same unit."""
        if isinstance(data, dict) and isinstance(data.get("phases"), list):
            interval = data.get("interval", "step")
            data = {**data, "phases": [{"interval": interval, **ph} if isinstance(ph, dict) else ph
                                       for ph in data["phases"]]}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.boundaries) != len(self.phases) - 1:
            raise ValueError(f"{len(self.phases)} phases need {len(self.phases) - 1} boundaries, "
                             f"got {len(self.boundaries)}")
        strictly_increasing(self.boundaries, "boundaries")
        for i, phase in enumerate(self.phases):
            if phase.interval != self.interval:
                raise ValueError(f"phases.{i} counts {phase.interval}s but the sequence counts "
                                 f"{self.interval}s; set interval on the sequence only")
            if phase.warmup is not None:
                raise ValueError(f"phases.{i} has a warmup; put warmup on the sequence, or a phase in front")
        return self


def _spans(p: SequenceParams, total: int) -> list[tuple[int, int]]:
    """Each phase's first count and its length (the last phase's reaches the end of the run)."""
    starts = [0, *p.boundaries]
    ends = [*p.boundaries, max(total, p.boundaries[-1] + 1 if p.boundaries else total)]
    return [(start, end - start) for start, end in zip(starts, ends)]


def _sequence_breaks(p: SequenceParams, lr: float, total: int) -> list[int]:
    """The boundaries, and each phase's own breaks moved to where the phase starts."""
    return [*p.boundaries, *(start + count for ph, (start, length) in zip(p.phases, _spans(p, total))
                            for count in METHODS[ph.name].breaks(ph, lr, length) if count < length)]


@register(SequenceParams, "phase i for boundaries[i-1] <= t < boundaries[i], counting t - boundaries[i-1]",
          "PyTorch SequentialLR / optax.join_schedules", breaks=_sequence_breaks, horizon=("boundaries",))
def sequence(p: SequenceParams, lr: float, total: int):
    spans = _spans(p, total)
    starts = [start for start, _ in spans]
    phases = [METHODS[ph.name].build(ph, lr, length) for ph, (_, length) in zip(p.phases, spans)]

    def lr_at(t: int) -> float:
        i = bisect.bisect_right(p.boundaries, t)
        return phases[i](t - starts[i])

    return lr_at
