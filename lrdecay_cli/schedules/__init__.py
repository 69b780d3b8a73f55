"""The schedule catalogue: one registry of decay methods (registry.py), each a pure function `step -> lr`, that
the spec, validation, `lrdecay schedules` and the tests all read."""

from lrdecay_cli.schedules import classic, keras, modern, plateau, pytorch  # noqa: F401  (each registers its methods)
from lrdecay_cli.schedules import compose  # noqa: F401  (last: its phases may be any method above)
from lrdecay_cli.schedules.registry import METHODS, Method, Schedule, ScheduleParams, Warmup, lr_schedule

__all__ = ["METHODS", "Method", "Schedule", "ScheduleParams", "Warmup", "lr_schedule"]
