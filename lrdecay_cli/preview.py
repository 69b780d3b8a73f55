"""The LR of every step of a spec without training (`lrdecay schedule`); no torch import.

It replays exactly what the training loop does: the same `Schedule`, the same steps per epoch
(from the spec's data size, validation split and batch size), `observe` after every epoch. A
metric-driven method (plateau) is shown under the assumption that the metric never improves
after the first evaluation.
"""

from __future__ import annotations

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import Spec

STALLED_METRICS = {"val_loss": 1.0, "val_acc": 0.5, "train_loss": 1.0}
"""What plateau sees in a preview: the same value after every epoch, i.e. no improvement."""
MAX_PREVIEW_STEPS = 1_000_000
"""The most steps a preview computes: the output is built in memory, 1.8 s and 330 MB as JSON at this
limit (10 million took 19 s and 3 GB; a billion ate memory until killed), and a curve of more points is
no more readable. Longer runs are previewed in part with --steps."""


def preview(spec: Spec, steps: int) -> list[float]:
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


HORIZONS = {"step": "step_size", "multistep": "milestones", "exponential": "decay_steps",
            "inverse_time": "decay_steps", "piecewise_constant": "boundaries", "cosine_restarts": "first_decay_steps",
            "cosine_warm_restarts": "T_0", "cyclic": "step_size_up", "sequence": "boundaries"}
"""The parameter that sets when each method's LR first changes: what a warning of a flat run names."""
FRACTIONS = {"step": "step_fraction", "multistep": "milestone_fractions"}
"""The parameter that replaces it where the schedule gives it as a fraction of the run (then it is None)."""
UNCHANGING = ("constant", "plateau")
"""Methods whose LR stays put by design (constant) or follows the metric, not the step count (plateau)."""


def flat_run_warning(spec: Spec) -> str | None:
    """A warning where the schedule never changes the LR within the run (`step` with its default
    step_size of 10 on a 3-epoch run; `decay_steps: 860` after `data.limit` made an epoch 70 steps),
    naming the LR and the parameter to change; None where the LR moves. The LR is monotone between the
    schedule's breaks, so it is flat exactly where it is equal at every break and at both ends."""
    if spec.schedule.name in UNCHANGING:
        return None
    steps = spec.train.epochs * spec.steps_per_epoch()
    schedule = lr_schedule(spec.schedule, spec.optimizer.lr, spec.steps_per_epoch(), spec.train.epochs)
    points = {0, steps - 1, *(s for b in schedule.breaks() for s in (b - 1, b) if 0 <= s < steps)}
    lrs = {schedule(step) for step in points}
    if len(lrs) > 1:
        return None
    field = HORIZONS.get(spec.schedule.name)
    if field and getattr(spec.schedule, field) is None:
        field = FRACTIONS[spec.schedule.name]
    change = f"change schedule.{field}" if field else "check the schedule's parameters"
    return (f"the schedule never changes the LR in this run: {lrs.pop():g} from step 0 to step {steps - 1} "
            f"({spec.train.epochs} epochs of {spec.steps_per_epoch()} steps); {change}, or train longer")


def notes(spec: Spec) -> list[str]:
    """What a reader of the preview must know to read it right."""
    lines = [f"{spec.steps_per_epoch()} steps per epoch ({spec.data.train_size()} training images, "
             f"batch {spec.train.batch_size}); the run is {spec.train.epochs * spec.steps_per_epoch()} steps"]
    if spec.schedule.interval == "epoch":
        lines.append(f"interval: epoch: {spec.schedule.name} counts epochs; the LR changes only at epoch boundaries")
    if spec.schedule.name == "plateau":
        lines.append(f"plateau depends on the metric it monitors ({spec.schedule.monitor}): shown assuming "
                     "it never improves after the first epoch")
    return lines
