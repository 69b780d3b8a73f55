"""Methods that follow the run's budget: REX, and step decay placed by fractions of the run."""

import pytest

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.spec import from_data

STEPS_PER_EPOCH = 5
EPOCHS = (1, 2, 4, 8)


def checked(schedule: dict, epochs: int, steps_per_epoch: int = STEPS_PER_EPOCH):
    """The schedule of a run of `epochs` x `steps_per_epoch` (TINY's batch 64 over 64 * steps_per_epoch
    images), loaded and checked as `lrdecay train` does."""
    images = 64 * steps_per_epoch
    spec = from_data({"schedule": schedule, "data": {"limit": images + 10, "val_size": 10},
                      "train": {"epochs": epochs, "batch_size": 64}}, "spec.yaml")
    assert spec.steps_per_epoch() == steps_per_epoch
    spec.check_schedule("spec.yaml")
    return lr_schedule(spec.schedule, 0.1, steps_per_epoch, epochs)


def rex_formula(t: int, T: int) -> float:
    z = min(t, T) / T
    return 0.1 * (1 - z) / (1 / 2 + 1 / 2 * (1 - z))


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("epochs,steps_per_epoch", [(1, 7), (3, 5), (8, 13)])
def test_rex_equals_its_formula_at_every_step_and_ends_at_zero(interval, epochs, steps_per_epoch):
    lr_at = checked({"name": "rex", "interval": interval}, epochs, steps_per_epoch)
    unit = steps_per_epoch if interval == "epoch" else 1
    T = epochs * steps_per_epoch // unit
    lrs = [lr_at(step) for step in range(epochs * steps_per_epoch)]
    for step, lr in enumerate(lrs):
        assert lr == pytest.approx(rex_formula(step // unit, T), rel=1e-12, abs=0), step
    assert lrs[0] == 0.1 and all(b <= a for a, b in zip(lrs, lrs[1:])) and lrs[-1] > 0
    assert lr_at(epochs * steps_per_epoch) == 0.0  # t = T, one past the run


def test_rex_holds_zero_past_a_shorter_total_iters():
    lr_at = checked({"name": "rex", "total_iters": 12}, 4)
    assert [lr_at(t) for t in range(20)] == pytest.approx([rex_formula(t, 12) for t in range(20)], rel=1e-12, abs=0)
    assert lr_at(6) == pytest.approx(0.1 * 0.5 / 0.75) and lr_at(11) > 0
    assert [lr_at(t) for t in range(12, 20)] == [0.0] * 8
