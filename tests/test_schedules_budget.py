"""Methods that follow the run's budget: REX, and step decay placed by fractions of the run."""

import pytest

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.config.spec_file import from_data

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


def same_lrs(schedule: dict, explicit: dict, epochs: int, warmup: dict | None = None) -> None:
    """`schedule` and `explicit` give the same LR at every step of the run (and the step after it)."""
    extra = {"warmup": warmup} if warmup else {}
    by_fraction, by_count = checked({**schedule, **extra}, epochs), checked({**explicit, **extra}, epochs)
    steps = range(epochs * STEPS_PER_EPOCH + 1)
    assert [by_fraction(t) for t in steps] == [by_count(t) for t in steps]


# (interval, epochs) -> milestones of [0.5, 0.75]: the run has 5 steps per epoch, so `total` is 5, 10, 20, 40
# steps or 2, 4, 8 epochs; round(f * total) rounds halves to even (2.5 -> 2, 7.5 -> 8, 1.5 -> 2).
MILESTONES = {("step", 1): [2, 4], ("step", 2): [5, 8], ("step", 4): [10, 15], ("step", 8): [20, 30],
              ("epoch", 2): [1, 2], ("epoch", 4): [2, 3], ("epoch", 8): [4, 6]}


@pytest.mark.parametrize("interval,epochs", list(MILESTONES))
def test_milestone_fractions_equal_the_milestones_they_round_to(interval, epochs):
    common = {"name": "multistep", "interval": interval, "gamma": 0.5}
    same_lrs({**common, "milestone_fractions": [0.5, 0.75]}, {**common, "milestones": MILESTONES[interval, epochs]},
             epochs)
    drops = checked({**common, "milestone_fractions": [0.5, 0.75]}, epochs)
    unit = STEPS_PER_EPOCH if interval == "epoch" else 1
    first, second = (m * unit for m in MILESTONES[interval, epochs])
    assert [drops(t) for t in (first - 1, first, second - 1, second)] == [0.1, 0.05, 0.05, 0.025]


def test_fractions_are_of_the_run_after_its_warmup():
    """4 epochs of 5 steps less a 5-step warmup: the method's run is 15 steps, 7.5 -> 8 and 11.25 -> 11."""
    common = {"name": "multistep", "interval": "step"}
    same_lrs({**common, "milestone_fractions": [0.5, 0.75]}, {**common, "milestones": [8, 11]}, 4, {"steps": 5})
    same_lrs({"name": "step", "interval": "step", "step_fraction": 0.2}, {"name": "step", "interval": "step",
                                                                          "step_size": 3}, 4, {"steps": 5})


# (interval, epochs) -> step_size of step_fraction 0.25: round(1.25) = 1, round(2.5) = 2, and at least 1
# where the run is too short (0.25 or 0.5 of an epoch).
STEP_SIZES = {("step", 1): 1, ("step", 2): 2, ("step", 4): 5, ("step", 8): 10,
              ("epoch", 1): 1, ("epoch", 2): 1, ("epoch", 4): 1, ("epoch", 8): 2}


@pytest.mark.parametrize("interval,epochs", list(STEP_SIZES))
def test_step_fraction_equals_the_step_size_it_rounds_to(interval, epochs):
    common = {"name": "step", "interval": interval, "gamma": 0.5}
    same_lrs({**common, "step_fraction": 0.25}, {**common, "step_size": STEP_SIZES[interval, epochs]}, epochs)


@pytest.mark.parametrize("epochs", EPOCHS)
def test_step_fraction_one_is_the_whole_run(epochs):
    lr_at = checked({"name": "step", "interval": "step", "step_fraction": 1.0}, epochs)
    run = epochs * STEPS_PER_EPOCH
    assert {lr_at(t) for t in range(run)} == {0.1} and lr_at(run) == pytest.approx(0.01)


def test_fractions_round_trip_through_the_resolved_spec(tmp_path):
    """The resolved spec writes every field: step_size is None beside step_fraction, or it would read back
    as both given."""
    from lrdecay_cli.config import spec_file as spec
    from lrdecay_cli.config.spec import Spec

    for schedule in ({"name": "step", "step_fraction": 0.5}, {"name": "multistep", "milestone_fractions": [0.5]}):
        path = tmp_path / "spec.yaml"
        path.write_text(f"schedule: {schedule}\n")
        loaded = spec.load(path)
        path.write_text(loaded.dump())
        assert spec.load(path) == loaded
    assert loaded.schedule.milestones is None and Spec().schedule.name == "constant"


def test_a_flat_run_by_fraction_names_the_fraction():
    from lrdecay_cli.schedules.preview import flat_run_warning

    loaded = from_data({"schedule": {"name": "step", "step_fraction": 1.0}}, "spec.yaml")
    assert "change schedule.step_fraction, or train longer" in flat_run_warning(loaded)


BAD = [
    ({"name": "step", "step_size": 2, "step_fraction": 0.5}, 1, "schedule: give step_size or step_fraction, not both"),
    ({"name": "step", "step_size": 10, "step_fraction": 0.5}, 1, "not both"),  # the default, written out
    ({"name": "step", "step_size": None}, 1, "schedule: give step_size or step_fraction;"),
    ({"name": "step", "step_fraction": 0}, 1, "schedule.step_fraction: must be greater than 0"),
    ({"name": "step", "step_fraction": 1.5}, 1, "schedule.step_fraction: must be less than or equal to 1"),
    ({"name": "multistep", "milestones": [2], "milestone_fractions": [0.5]}, 1,
     "schedule: give milestones or milestone_fractions, not both"),
    ({"name": "multistep"}, 1, "schedule: give milestones (counts) or milestone_fractions (fractions of the run)"),
    ({"name": "multistep", "milestone_fractions": []}, 1, "schedule.milestone_fractions: List should have at least 1"),
    ({"name": "multistep", "milestone_fractions": [0.5, 1]}, 1, "schedule.milestone_fractions.1: must be less than 1"),
    ({"name": "multistep", "milestone_fractions": [0, 0.5]}, 1,
     "schedule.milestone_fractions.0: must be greater than 0"),
    ({"name": "multistep", "milestone_fractions": [0.75, 0.5]}, 1,
     "schedule.milestone_fractions: milestone_fractions must be strictly increasing"),
    ({"name": "multistep", "milestone_fractions": [0.5, 0.75]}, 1,
     "schedule.milestone_fractions: milestone_fractions [0.5, 0.75] give the milestones [1, 1] in a run of 1 "
     "epochs, where two coincide; train longer or space the fractions further apart, or count steps (interval: step)"),
    ({"name": "multistep", "interval": "step", "milestone_fractions": [0.3, 0.35]}, 1,
     "give the milestones [2, 2] in a run of 5 steps, where two coincide; train longer or space the fractions "
     "further apart"),
]


@pytest.mark.parametrize("schedule,epochs,message", BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_fractions_are_one_line_user_errors(tmp_path, schedule, epochs, message):
    import yaml

    from lrdecay_cli.config import spec_file as spec
    from lrdecay_cli.config.spec import Spec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"schedule": schedule, "train": {"epochs": epochs, "batch_size": 64},
                                    "data": {"limit": 64 * STEPS_PER_EPOCH + 10, "val_size": 10}}))
    with pytest.raises(UserError) as caught:
        spec.load(path).check_schedule(str(path))
    line = caught.value.line()
    assert "\n" not in line and line.startswith(f"{path}: ") and message in line, line
    if "interval" in schedule:
        assert "(interval: step)" not in line  # counting steps already: no such advice


def test_schedules_lists_rex_and_the_fractions(cli):
    listed = " ".join(cli("schedules").stdout.split())
    assert "rex" in listed and "milestone_fractions=None" in listed and "step_fraction=None" in listed
    shown = cli("schedules", "rex")
    assert shown.exit_code == 0 and "total_iters" in shown.stdout and "Chen et al. 2021" in shown.stdout
