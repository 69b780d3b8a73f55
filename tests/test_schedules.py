"""Schedules are pure functions of the step count and equal their published formulas exactly."""

import math

import pytest

from lrdecay_cli.schedules import METHODS, lr_schedule
from lrdecay_cli.config.spec import Spec

STEPS = range(0, 5000, 7)


def build(name, lr=0.1, steps_per_epoch=100, epochs=50, **params):
    return lr_schedule(METHODS[name].params(**params), lr, steps_per_epoch, epochs)


def test_registry_entries_are_complete():
    assert {"constant", "step", "exponential", "inverse_time"} <= set(METHODS)
    for name, method in METHODS.items():
        assert method.name == name == method.params.model_fields["name"].default
        assert method.formula and method.origin


def test_constant():
    lr_at = build("constant", lr=0.03)
    assert all(lr_at(t) == 0.03 for t in STEPS)


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("decay_steps,decay_rate", [(1, 0.999), (100, 0.96), (997, 0.5), (250, 1.5)])
def test_exponential_matches_keras_formula(decay_steps, decay_rate, staircase):
    lr_at = build("exponential", decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase)
    for t in STEPS:
        p = t / decay_steps
        if staircase:
            p = math.floor(p)
        assert lr_at(t) == 0.1 * decay_rate ** p


@pytest.mark.parametrize("staircase", [False, True])
@pytest.mark.parametrize("decay_steps,decay_rate", [(1, 0.01), (100, 0.5), (333, 2.0)])
def test_inverse_time_matches_keras_formula(decay_steps, decay_rate, staircase):
    lr_at = build("inverse_time", decay_steps=decay_steps, decay_rate=decay_rate, staircase=staircase)
    for t in STEPS:
        p = t / decay_steps
        if staircase:
            p = math.floor(p)
        assert lr_at(t) == 0.1 / (1 + decay_rate * p)


def test_staircase_changes_exactly_at_boundaries():
    lr_at = build("exponential", decay_steps=100, decay_rate=0.5, staircase=True)
    assert lr_at(0) == lr_at(99) == 0.1
    assert lr_at(100) == lr_at(199) == 0.05
    assert lr_at(200) == 0.025


def test_step_counts_epochs_by_default():
    lr_at = build("step", steps_per_epoch=10, step_size=3, gamma=0.5)
    assert METHODS["step"].params().interval == "epoch"
    assert [lr_at(s) for s in (0, 29, 30, 59, 60)] == [0.1, 0.1, 0.05, 0.05, 0.025]


def test_epoch_interval_changes_only_at_epoch_boundaries():
    lr_at = build("exponential", steps_per_epoch=50, decay_steps=1, decay_rate=0.9, interval="epoch")
    for step in range(500):
        assert lr_at(step) == 0.1 * 0.9 ** (step // 50)


def test_schedule_spec_validates_parameters():
    from lrdecay_cli.errors import UserError
    from lrdecay_cli.config.spec_file import from_data

    for bad in ({"decay_rate": 0}, {"decay_rate": -1}, {"decay_steps": 0}, {"decay_rate": float("inf")}):
        with pytest.raises(UserError, match="schedule.decay_"):
            from_data({"schedule": {"name": "exponential", **bad}}, "x.yaml")
    assert Spec().schedule.name == "constant"


# ----------------------------------------------------------------------------- plateau


def torch_plateau_lrs(kwargs: dict, lr: float, metrics: list[float]) -> list[float]:
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    out = []
    for metric in metrics:
        scheduler.step(metric)
        out.append(optimizer.param_groups[0]["lr"])
    return out


def noisy_plateaus(rng, n: int, mode: str) -> list[float]:
    """A metric that improves, stalls for a while, jitters within the threshold, and so on."""
    value, out = 1.0, []
    while len(out) < n:
        if rng.random() < 0.4:
            value *= rng.uniform(0.9, 0.999) if mode == "min" else rng.uniform(1.001, 1.1)
        out.extend([value * (1 + rng.uniform(-1e-6, 1e-6))] * rng.randint(1, 12))
    return out[:n]


@pytest.mark.parametrize("seed", range(8))
def test_plateau_equals_reduce_lr_on_plateau(seed):
    import random

    from lrdecay_cli.schedules.plateau import Plateau, PlateauParams

    rng = random.Random(seed)
    monitor = rng.choice(["val_loss", "val_acc"])
    mode = "min" if monitor == "val_loss" else "max"
    kwargs = dict(factor=rng.choice([0.1, 0.5, 0.9]), patience=rng.randint(0, 6), threshold=rng.choice([0, 1e-4, 1e-2]),
                  threshold_mode=rng.choice(["rel", "abs"]), cooldown=rng.randint(0, 4),
                  min_lr=rng.choice([0.0, 1e-4, 1e-3]), eps=rng.choice([1e-8, 1e-5]))
    metrics = noisy_plateaus(rng, 2000, mode)
    ours = Plateau(PlateauParams(monitor=monitor, **kwargs), 0.1)
    expected = torch_plateau_lrs({"mode": mode, **kwargs}, 0.1, metrics)
    for metric, theirs in zip(metrics, expected):
        ours.observe({monitor: metric})
        assert ours(0) == theirs
    assert min(expected) < 0.1  # the sequence really exercised decays


def test_plateau_state_round_trips_and_mode_follows_monitor():
    from lrdecay_cli.schedules.plateau import Plateau, PlateauParams

    assert PlateauParams(monitor="val_acc").resolved_mode() == "max"
    a = Plateau(PlateauParams(patience=1, factor=0.5), 0.1)
    for metric in (1.0, 1.0, 1.0):
        a.observe({"val_loss": metric})
    b = Plateau(PlateauParams(patience=1, factor=0.5), 0.1)
    b.load_state_dict(a.state_dict())
    for metric in (1.0, 1.0, 0.5, 0.6, 0.6):
        a.observe({"val_loss": metric})
        b.observe({"val_loss": metric})
        assert a(0) == b(0)
    assert a(0) == 0.0125  # decays after epochs 3, 5 and 8 of 1,1,1,1,1,.5,.6,.6


# ----------------------------------------------------------------------------- warmup and sequence


def params(**kw):
    from lrdecay_cli.config.spec_file import from_data

    return from_data({"schedule": kw}, "test").schedule


def checked_params(**kw):
    """As `params`, then the check a run makes before it starts (the LR of every step of the run)."""
    from lrdecay_cli.config.spec_file import from_data

    spec = from_data({"schedule": kw}, "test")
    spec.check_schedule("test")
    return spec.schedule


@pytest.mark.parametrize("shape", ["linear", "exponential"])
def test_warmup_ramps_to_the_methods_first_lr_then_the_method_counts_from_zero(shape):
    p = params(name="exponential", decay_steps=10, decay_rate=0.5, warmup={"steps": 30, "shape": shape, "start_factor": 0.01})
    lr_at = lr_schedule(p, 0.2, 100, 5)
    for t in range(30):
        f = 0.01 + 0.99 * t / 30 if shape == "linear" else 0.01 ** (1 - t / 30)
        assert math.isclose(lr_at(t), 0.2 * f, rel_tol=1e-12)
    for t in range(30, 500):
        assert lr_at(t) == 0.2 * 0.5 ** ((t - 30) / 10)
    assert lr_at(0) == pytest.approx(0.002) and lr_at(29) < lr_at(30) == 0.2


def test_warmup_in_epochs_before_an_epoch_method():
    p = params(name="step", step_size=1, gamma=0.5, interval="epoch", warmup={"epochs": 2, "start_factor": 0.5})
    lr_at = lr_schedule(p, 0.1, 10, 6)
    assert [lr_at(t) for t in (0, 10)] == [pytest.approx(0.05), pytest.approx(0.075)]
    assert [lr_at(t) for t in (20, 29, 30, 40)] == [0.1, 0.1, 0.05, 0.025]


def test_warmup_needs_exactly_one_length():
    from lrdecay_cli.errors import UserError

    for bad in ({}, {"steps": 5, "epochs": 1}, {"steps": 0}, {"steps": 5, "start_factor": 0}):
        with pytest.raises(UserError, match="schedule.warmup"):
            params(name="constant", warmup=bad)


def test_sequence_phases_count_from_zero_at_their_boundaries():
    p = params(name="sequence", interval="step", boundaries=[100, 250], phases=[
        {"name": "constant"},
        {"name": "exponential", "decay_steps": 50, "decay_rate": 0.5},
        {"name": "inverse_time", "decay_steps": 10, "decay_rate": 1.0, "staircase": True},
    ])
    lr_at = lr_schedule(p, 0.1, 50, 10)
    for t in range(600):
        if t < 100:
            expected = 0.1
        elif t < 250:
            expected = 0.1 * 0.5 ** ((t - 100) / 50)
        else:
            expected = 0.1 / (1 + math.floor((t - 250) / 10))
        assert lr_at(t) == expected


def test_sequence_in_epochs():
    p = params(name="sequence", interval="epoch", boundaries=[2],
               phases=[{"name": "constant"}, {"name": "step", "step_size": 1, "gamma": 0.1}])
    lr_at = lr_schedule(p, 1.0, 10, 5)
    assert [lr_at(t) for t in range(0, 50, 10)] == [1.0, 1.0, 1.0, 0.1, pytest.approx(0.01)]


@pytest.mark.parametrize("bad,message", [
    ({}, "2 phases need 1 boundaries, got 2"),
    ({"boundaries": [5, 5], "phases": [{"name": "constant"}] * 3}, "strictly increasing"),
    ({"boundaries": [5], "phases": [{"name": "constant"}, {"name": "plateau"}]}, "phases.1.name: unknown schedule method 'plateau'"),
    ({"boundaries": [5], "phases": [{"name": "constant"}, {"name": "step", "interval": "epoch"}]}, "counts epochs"),
])
def test_sequence_validation(bad, message):
    from lrdecay_cli.errors import UserError

    spec = {"name": "sequence", "boundaries": [5, 9], "phases": [{"name": "constant"}, {"name": "constant"}], **bad}
    with pytest.raises(UserError, match=message):
        params(**spec)


@pytest.mark.parametrize("seed", range(4))
def test_step_equals_step_lr(seed):
    import random
    import warnings

    import torch

    rng = random.Random(seed)
    step_size, gamma, lr = rng.randint(1, 300), rng.uniform(0.1, 0.99), rng.uniform(1e-4, 1.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    ours = build("step", lr=lr, steps_per_epoch=1, step_size=step_size, gamma=gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(2500):
            assert math.isclose(ours(t), optimizer.param_groups[0]["lr"], rel_tol=1e-9)
            scheduler.step()


def test_underflowing_lrs_are_refused_before_training(cli, write_spec, tmp_path):
    from lrdecay_cli.errors import UserError

    with pytest.raises(UserError, match=r"test: schedule: the LR underflows to .* at step \d+ of this run"):
        checked_params(name="exponential", decay_steps=1, decay_rate=1e-12)
    assert params(name="exponential", decay_steps=1, decay_rate=1e-12).decay_rate == 1e-12  # valid, not yet checked
    assert checked_params(name="exponential", decay_steps=1000, decay_rate=1e-12).decay_rate == 1e-12  # short run
    out = cli("train", write_spec({"schedule": {"name": "exponential", "decay_steps": 1, "decay_rate": 1e-20}}),
              "--runs-dir", tmp_path / "runs")
    assert out.exit_code == 2 and "underflows" in out.stderr and not (tmp_path / "runs").exists()


def test_lrs_that_reach_zero_by_design_are_allowed():
    for kw in ({"name": "wsd", "min_lr_ratio": 0.0}, {"name": "inverse_sqrt", "warmup_steps": 10},
               {"name": "linear", "end_factor": 0.0, "total_iters": 2}):
        assert checked_params(**kw).name == kw["name"]


def test_plateau_cuts_after_patience_plus_one_epochs_as_its_text_says(cli):
    """The described convention is the implemented one: patience p tolerates p epochs without
    improvement and cuts at the (p + 1)-th (PyTorch; Keras' patience=p is ours p - 1)."""
    from lrdecay_cli.schedules.plateau import Plateau, PlateauParams

    plateau = Plateau(PlateauParams(patience=2, factor=0.5), 0.1)
    plateau.observe({"val_loss": 1.0})  # the first value is an improvement (on inf)
    seen = []
    for _ in range(4):
        plateau.observe({"val_loss": 1.0})  # no improvement
        seen.append(plateau(0))
    assert seen == [0.1, 0.1, 0.05, 0.05]
    shown = cli("schedules", "plateau").stdout
    assert "patience + 1" in " ".join(shown.split())
