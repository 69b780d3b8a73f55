"""The LR of every step of a spec without training (`lrdecay schedule`), replaying the training loop's `Schedule`
and `observe` after every epoch; plateau is shown as if its metric never improved. No torch import."""

from __future__ import annotations

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.registry import METHODS, lr_schedule

STALLED_METRICS = {"val_loss": 1.0, "val_acc": 0.5, "train_loss": 1.0}
"""What plateau sees in a preview: the same value after every epoch, i.e. no improvement."""
MAX_PREVIEW_STEPS = 1_000_000
"""The most steps a preview computes, in memory: 1.8 s and 330 MB as JSON (10 million took 19 s and 3 GB),
and a curve of more points is no more readable. Longer runs are previewed in part with --steps."""


def preview(spec, steps: int) -> list[float]:
    """LR for optimizer steps 0..steps-1 of `spec`, at most MAX_PREVIEW_STEPS of them."""
    if steps > MAX_PREVIEW_STEPS:
        raise UserError(f"{steps:,} steps are more than a preview shows ({MAX_PREVIEW_STEPS:,})", where="--steps",
                        fix=f"pass --steps {MAX_PREVIEW_STEPS} or fewer (the whole run is "
                            f"{spec.train.epochs * spec.steps_per_epoch():,} steps)")
    steps_per_epoch = spec.steps_per_epoch()
    schedule = lr_schedule(spec.schedule, spec.optimizer.lr, steps_per_epoch, spec.train.epochs)
    lrs = []
    for step in range(steps):
        lrs.append(schedule(step))
        if (step + 1) % steps_per_epoch == 0:
            schedule.observe(step + 1, STALLED_METRICS)
    return lrs


def flat_run_warning(spec) -> str | None:
    """A warning where the schedule never changes the LR within the run (`step`'s default step_size of 10 on a
    3-epoch run), else None: the LR is monotone between breaks, so flat if equal at every break and both ends."""
    method = METHODS[spec.schedule.name]
    if method.unchanging:
        return None
    steps = spec.train.epochs * spec.steps_per_epoch()
    schedule = lr_schedule(spec.schedule, spec.optimizer.lr, spec.steps_per_epoch(), spec.train.epochs)
    points = {0, steps - 1, *(s for b in schedule.breaks() for s in (b - 1, b) if 0 <= s < steps)}
    lrs = {schedule(step) for step in points}
    if len(lrs) > 1:
        return None
    field = next((name for name in method.horizon if getattr(spec.schedule, name) is not None), None)
    change = f"change schedule.{field}" if field else "check the schedule's parameters"
    return (f"the schedule never changes the LR in this run: {lrs.pop():g} from step 0 to step {steps - 1} "
            f"({spec.train.epochs} epochs of {spec.steps_per_epoch()} steps); {change}, or train longer")


def notes(spec) -> list[str]:
    """What a reader of the preview must know to read it right."""
    lines = [f"{spec.steps_per_epoch()} steps per epoch ({spec.data.train_size()} training images, "
             f"batch {spec.train.batch_size}); the run is {spec.train.epochs * spec.steps_per_epoch()} steps"]
    if spec.schedule.interval == "epoch":
        lines.append(f"interval: epoch: {spec.schedule.name} counts epochs; the LR changes only at epoch boundaries")
    if spec.schedule.name == "plateau":
        lines.append(f"plateau depends on the metric it monitors ({spec.schedule.monitor}): shown assuming "
                     "it never improves after the first epoch")
    return lines
