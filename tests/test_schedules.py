"""Schedules are pure functions of the step count and equal their published formulas exactly."""

import math

import pytest

from lrdecay_cli.schedules import METHODS, lr_schedule
from lrdecay_cli.spec import Spec

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
    from lrdecay_cli.spec import from_data

    for bad in ({"decay_rate": 0}, {"decay_rate": -1}, {"decay_steps": 0}, {"decay_rate": float("inf")}):
        with pytest.raises(UserError, match="schedule.decay_"):
            from_data({"schedule": {"name": "exponential", **bad}}, "x.yaml")
    assert Spec().schedule.name == "constant"
