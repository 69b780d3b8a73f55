"""The schedule catalogue: one registry of decay methods, each a pure function `step -> lr`.

A method is registered once (`schedules/registry.py`) with its parameter model, builder,
one-line formula and origin; the spec, validation, `lrdecay schedules` and the tests all read
that registry. `lr_schedule` turns a validated schedule spec into the function the training
loop applies before every optimizer step.
"""

from lrdecay_cli.schedules import classic, keras, modern, plateau, pytorch  # noqa: F401  (each registers its methods)
from lrdecay_cli.schedules import compose  # noqa: F401  (last: its phases may be any method above)
from lrdecay_cli.schedules.registry import METHODS, Method, Schedule, ScheduleParams, Warmup, lr_schedule

__all__ = ["METHODS", "Method", "Schedule", "ScheduleParams", "Warmup", "lr_schedule"]
