"""Keras-family and modern schedules equal their published formulas, written out here independently.

The Keras references copy the arithmetic of keras/src/optimizers/schedules/learning_rate_schedule.py
(Keras 3) line by line, in float64.
"""

import bisect
import math
import random
from fractions import Fraction

import pytest
from pydantic import ValidationError

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.registry import METHODS

STEPS = range(2500)


def ours(name, lr=0.1, total=2000, **params):
    return METHODS[name].build(METHODS[name].params(**params), lr, total)


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9)


def assert_matches(lr_at, reference, steps=STEPS):
    bad = [(t, lr_at(t), reference(t)) for t in steps if not close(lr_at(t), reference(t))]
    assert not bad, f"{len(bad)} steps differ, first (t, ours, reference): {bad[:3]}"


# ----------------------------------------------------------------------------- Keras, written out


def keras_polynomial(step, initial_learning_rate, decay_steps, end_learning_rate, power, cycle):
    global_step_recomp = float(step)
    decay_steps_recomp = float(decay_steps)
    if cycle:
        multiplier = 1.0 if global_step_recomp == 0 else math.ceil(global_step_recomp / decay_steps)
        decay_steps_recomp = decay_steps_recomp * multiplier
    else:
        global_step_recomp = min(global_step_recomp, decay_steps_recomp)
    p = global_step_recomp / decay_steps_recomp
    return (initial_learning_rate - end_learning_rate) * (1 - p) ** power + end_learning_rate


def keras_piecewise_constant(step, boundaries, values):
    result = 0.0
    result += (step <= boundaries[0]) * values[0]
    result += (step > boundaries[-1]) * values[-1]
    for low, high, value in zip(boundaries[:-1], boundaries[1:], values[1:-1]):
        result += ((step > low) & (step <= high)) * value
    return result


def keras_cosine(step, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decay_function(step, decay_steps, decay_from_lr):
        completed_fraction = step / decay_steps
        cosine_decayed = 0.5 * (1.0 + math.cos(math.pi * completed_fraction))
        decayed = (1 - alpha) * cosine_decayed + alpha
        return decay_from_lr * decayed

    global_step_recomp = float(step)
    if warmup_target is None:
        return decay_function(min(global_step_recomp, decay_steps), decay_steps, initial_learning_rate)
    global_step_recomp = min(global_step_recomp, decay_steps + warmup_steps)
    if global_step_recomp < warmup_steps:
        completed_fraction = global_step_recomp / warmup_steps
        return (warmup_target - initial_learning_rate) * completed_fraction + initial_learning_rate
    return decay_function(global_step_recomp - warmup_steps, decay_steps, warmup_target)


def keras_restart_index(completed_fraction, t_mul):
    if t_mul == 1.0:
        return math.floor(completed_fraction)
    return math.floor(math.log(1.0 - completed_fraction * (1.0 - t_mul)) / math.log(t_mul))


def keras_cosine_restarts(step, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                          i_restart=None):
    """Keras' formula; `i_restart` replaces Keras' float64 floor(log(...)) with a given period index."""
    completed_fraction = float(step) / first_decay_steps
    if i_restart is None:
        i_restart = keras_restart_index(completed_fraction, t_mul)
    if t_mul == 1.0:
        completed_fraction -= i_restart
    else:
        sum_r = (1.0 - t_mul ** i_restart) / (1.0 - t_mul)
        completed_fraction = (completed_fraction - sum_r) / t_mul ** i_restart
    m_fac = m_mul ** i_restart
    cosine_decayed = 0.5 * m_fac * (1.0 + math.cos(math.pi * completed_fraction))
    decayed = (1 - alpha) * cosine_decayed + alpha
    return initial_learning_rate * decayed


def exact_period_starts(first_decay_steps, t_mul, last_step):
    """Where each period starts, in units of first_decay_steps, in exact rational arithmetic."""
    ratio, starts, length = Fraction(t_mul), [Fraction(0)], Fraction(1)
    while starts[-1] <= Fraction(last_step, first_decay_steps):
        starts.append(starts[-1] + length)
        length *= ratio
    return starts


# ----------------------------------------------------------------------------- polynomial


@pytest.mark.parametrize("seed", range(6))
def test_polynomial_matches_keras(seed):
    rng = random.Random(seed)
    lr = rng.uniform(1e-3, 1.0)
    params = dict(decay_steps=rng.randint(1, 1500), end_learning_rate=rng.choice([0.0, 1e-4, rng.uniform(0, 0.05)]),
                  power=rng.choice([0.5, 1.0, 2.0, rng.uniform(0.1, 4.0)]), cycle=seed % 2 == 0)
    assert_matches(ours("polynomial", lr, **params), lambda t: keras_polynomial(t, lr, **params))


def test_polynomial_edges():
    lr_at = ours("polynomial", lr=0.5, decay_steps=100, end_learning_rate=0.01, power=2.0)
    assert lr_at(0) == 0.5
    assert lr_at(100) == lr_at(101) == lr_at(10_000) == 0.01  # clipped to decay_steps
    assert close(lr_at(50), (0.5 - 0.01) * 0.25 + 0.01)

    cyc = ours("polynomial", lr=0.5, decay_steps=100, end_learning_rate=0.0, power=1.0, cycle=True)
    assert cyc(0) == 0.5  # Keras' multiplier is 1 at step 0, not ceil(0) = 0
    assert cyc(100) == cyc(200) == 0.0  # each multiple of decay_steps ends a decay ...
    assert cyc(101) == 0.5 * (1 - 101 / 200) and cyc(201) == 0.5 * (1 - 201 / 300)  # ... and the LR jumps up after it


def test_polynomial_decay_steps_default_to_the_run():
    lr_at = ours("polynomial", lr=0.2, total=700, end_learning_rate=0.0)
    assert lr_at(350) == 0.1 and lr_at(700) == 0.0


# ----------------------------------------------------------------------------- piecewise_constant


@pytest.mark.parametrize("seed", range(6))
def test_piecewise_constant_matches_keras(seed):
    rng = random.Random(100 + seed)
    boundaries = sorted(rng.sample(range(0, 2400), rng.randint(1, 8)))
    values = [rng.uniform(1e-4, 1.0) for _ in range(len(boundaries) + 1)]
    lr_at = ours("piecewise_constant", lr=123.0, boundaries=boundaries, values=values)
    assert_matches(lr_at, lambda t: keras_piecewise_constant(t, boundaries, values))


def test_piecewise_constant_boundaries_belong_to_the_piece_before():
    lr_at = ours("piecewise_constant", lr=9.0, boundaries=[0, 10, 20], values=[1.0, 0.5, 0.25, 0.125])
    assert [lr_at(t) for t in (0, 1, 10, 11, 20, 21, 10_000)] == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


# ----------------------------------------------------------------------------- cosine


@pytest.mark.parametrize("seed", range(8))
def test_cosine_matches_keras(seed):
    rng = random.Random(200 + seed)
    lr = rng.uniform(1e-3, 1.0)
    params = dict(decay_steps=rng.randint(1, 2000), alpha=rng.choice([0.0, rng.uniform(0, 1)]))
    if seed % 2:
        params.update(warmup_target=rng.uniform(1e-3, 2.0), warmup_steps=rng.choice([0, rng.randint(1, 600)]))
    assert_matches(ours("cosine", lr, **params), lambda t: keras_cosine(t, lr, **params))


def test_cosine_edges():
    plain = ours("cosine", lr=0.4, decay_steps=100, alpha=0.25)
    assert plain(0) == 0.4 and close(plain(50), 0.4 * (0.75 * 0.5 + 0.25))
    assert plain(100) == plain(5000) == 0.4 * 0.25  # clipped to decay_steps

    warm = ours("cosine", lr=0.01, decay_steps=100, alpha=0.0, warmup_target=0.5, warmup_steps=20)
    assert warm(0) == 0.01 and close(warm(10), 0.01 + 0.49 * 0.5)  # linear from optimizer.lr ...
    assert warm(20) == 0.5  # ... to warmup_target, where the cosine starts
    assert warm(120) == warm(121) == 0.0  # clipped to warmup_steps + decay_steps

    jump = ours("cosine", lr=0.01, decay_steps=100, warmup_target=0.5, warmup_steps=0)
    assert jump(0) == 0.5  # no warmup steps: Keras decays from warmup_target at once


def test_cosine_decay_steps_default_to_the_rest_of_the_run():
    lr_at = ours("cosine", lr=0.1, total=1000, alpha=0.1, warmup_target=0.2, warmup_steps=200)
    assert lr_at(200) == 0.2 and close(lr_at(600), 0.2 * (0.9 * 0.5 + 0.1)) and close(lr_at(1000), 0.02)
    with pytest.raises(UserError, match="schedule.warmup_steps"):
        ours("cosine", total=200, warmup_target=0.2, warmup_steps=200)


# ----------------------------------------------------------------------------- cosine_restarts


@pytest.mark.parametrize("seed", range(8))
def test_cosine_restarts_matches_keras(seed):
    rng = random.Random(300 + seed)
    lr = rng.uniform(1e-3, 1.0)
    params = dict(first_decay_steps=rng.randint(1, 400), t_mul=[1.0, 2.0, 1.5, 3.0][seed % 4] if seed < 6 else
                  rng.uniform(1.1, 3.0), m_mul=rng.choice([1.0, 0.5, rng.uniform(0.3, 1.2)]),
                  alpha=rng.choice([0.0, rng.uniform(0, 1)]))
    starts = exact_period_starts(params["first_decay_steps"], params["t_mul"], STEPS[-1])
    lr_at = ours("cosine_restarts", lr, **params)
    for t in STEPS:
        fraction = Fraction(t, params["first_decay_steps"])
        i = bisect.bisect_right(starts, fraction) - 1
        assert close(lr_at(t), keras_cosine_restarts(t, lr, **params, i_restart=i)), t
        if keras_restart_index(float(fraction), params["t_mul"]) != i:
            assert fraction == starts[i]  # Keras' float64 floor slips only on a period's first step


def test_cosine_restarts_periods():
    lr_at = ours("cosine_restarts", lr=1.0, first_decay_steps=10, t_mul=1.0, m_mul=0.5, alpha=0.2)
    for i in range(5):
        assert close(lr_at(10 * i), 0.8 * 0.5 ** i + 0.2)  # each restart at m_mul x the previous peak
        assert close(lr_at(10 * i + 5), 0.8 * 0.5 ** i * 0.5 + 0.2)

    doubling = ours("cosine_restarts", lr=1.0, first_decay_steps=10, t_mul=2.0)
    for start, length in [(0, 10), (10, 20), (30, 40), (70, 80)]:
        assert doubling(start) == 1.0 and close(doubling(start + length // 2), 0.5)
        assert doubling(start + length - 1) < 0.03


@pytest.mark.parametrize("t_mul,first_decay_steps,period", [(10.0, 1, 3), (3.0, 2, 5), (1.5, 16, 5)])
def test_cosine_restarts_start_on_the_first_step_where_keras_float_log_slips(t_mul, first_decay_steps, period):
    start = int(first_decay_steps * exact_period_starts(1, t_mul, 10**6)[period])
    assert keras_restart_index(start / first_decay_steps, t_mul) == period - 1  # log ratio just below `period`
    assert keras_cosine_restarts(start, 1.0, first_decay_steps, t_mul, 0.5, 0.1) == pytest.approx(0.1)  # ends period-1
    lr_at = ours("cosine_restarts", lr=1.0, first_decay_steps=first_decay_steps, t_mul=t_mul, m_mul=0.5, alpha=0.1)
    assert lr_at(start) == pytest.approx(0.9 * 0.5 ** period + 0.1)  # ours starts the period on its first step
    assert lr_at(start - 1) < 0.1 + 1e-3 and lr_at(start + 1) == pytest.approx(
        keras_cosine_restarts(start + 1, 1.0, first_decay_steps, t_mul, 0.5, 0.1), rel=1e-12)


# ----------------------------------------------------------------------------- inverse_sqrt


@pytest.mark.parametrize("warmup", [1, 2, 37, 400, 2000])
def test_inverse_sqrt(warmup):
    lr_at = ours("inverse_sqrt", lr=0.3, warmup_steps=warmup)
    reference = lambda t: 0.3 * min(t / warmup, math.sqrt(warmup / t)) if t else 0.0  # Vaswani et al., peak 0.3
    assert_matches(lr_at, reference)
    assert lr_at(0) == 0.0 and lr_at(warmup) == 0.3  # continuous: the warmup line reaches lr exactly at t = warmup
    assert close(lr_at(4 * warmup), 0.15)
    assert all(lr_at(t + 1) < lr_at(t) for t in range(warmup, warmup + 200))


# ----------------------------------------------------------------------------- wsd

SHAPES = {"linear": lambda p: 1 - p,
          "cosine": lambda p: (1 + math.cos(math.pi * p)) / 2,
          "1-sqrt": lambda p: 1 - p ** 0.5}


def wsd_reference(t, lr, total, warmup, decay, shape, min_lr_ratio):
    if t < warmup:
        return lr * t / warmup
    remaining = total - t  # the last step has 1 remaining and is at min_lr
    if remaining > decay:
        return lr
    progress = 1.0 if remaining <= 0 else (decay - remaining + 1) / decay
    return lr * min_lr_ratio + lr * (1 - min_lr_ratio) * SHAPES[shape](progress)


@pytest.mark.parametrize("seed", range(9))
def test_wsd_matches_formula(seed):
    rng = random.Random(400 + seed)
    lr, total, shape = rng.uniform(1e-3, 1.0), rng.randint(100, 2400), list(SHAPES)[seed % 3]
    decay_fraction, min_lr_ratio = rng.uniform(0.05, 0.5), rng.choice([0.0, rng.uniform(0, 0.5)])
    warmup = rng.choice([0, rng.randint(1, total // 3)])
    lr_at = ours("wsd", lr, total, decay_fraction=decay_fraction, decay_shape=shape, min_lr_ratio=min_lr_ratio,
                 warmup_steps=warmup)
    decay = max(1, round(decay_fraction * total))
    assert_matches(lr_at, lambda t: wsd_reference(t, lr, total, warmup, decay, shape, min_lr_ratio))
    assert close(lr_at(total - 1), lr * min_lr_ratio)
    assert lr_at(total + 100) == lr_at(total - 1)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_wsd_phases_join_continuously(shape):
    lr_at = ours("wsd", lr=1.0, total=5000, warmup_steps=100, decay_fraction=0.2, decay_shape=shape, min_lr_ratio=0.1)
    assert lr_at(0) == 0.0 and lr_at(99) == 0.99 and lr_at(100) == 1.0  # warmup meets the stable LR at t = warmup
    assert lr_at(3999) == 1.0 and 1.0 - lr_at(4000) <= 0.9 * (1 / 1000) ** 0.5  # decay starts one step below lr
    assert all(lr_at(t + 1) <= lr_at(t) for t in range(3999, 5000))
    assert lr_at(4999) == pytest.approx(0.1, rel=1e-12) and lr_at(6000) == lr_at(4999)  # min_lr at the last step


def test_wsd_warmup_fraction_and_overlap():
    lr_at = ours("wsd", lr=1.0, total=1000, warmup_fraction=0.1, decay_fraction=0.3)
    assert lr_at(50) == 0.5 and lr_at(100) == lr_at(699) == 1.0 and lr_at(700) < 1.0
    with pytest.raises(UserError, match="schedule.warmup_steps"):
        ours("wsd", total=100, warmup_steps=90, decay_fraction=0.2)


# ----------------------------------------------------------------------------- all of them


CASES = {
    "polynomial": dict(decay_steps=300, power=0.5, cycle=True),
    "piecewise_constant": dict(boundaries=[100, 400], values=[0.1, 0.05, 0.01]),
    "cosine": dict(decay_steps=500, alpha=0.1, warmup_target=0.2, warmup_steps=50),
    "cosine_restarts": dict(first_decay_steps=100, t_mul=1.5, m_mul=0.8, alpha=0.05),
    "inverse_sqrt": dict(warmup_steps=100),
    "wsd": dict(warmup_steps=100, decay_shape="cosine"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pure_functions_of_t_in_any_order(name):
    forward = ours(name, **CASES[name])
    expected = {t: forward(t) for t in range(1500)}
    shuffled = list(expected)
    random.Random(0).shuffle(shuffled)
    fresh = ours(name, **CASES[name])
    assert all(fresh(t) == expected[t] for t in shuffled)
    assert METHODS[name].formula and METHODS[name].origin


@pytest.mark.parametrize("name,params,field", [
    ("piecewise_constant", dict(boundaries=[10, 20], values=[0.1, 0.05]), "values"),
    ("piecewise_constant", dict(boundaries=[10], values=[0.1, 0.05, 0.01]), "values"),
    ("piecewise_constant", dict(boundaries=[10, 10], values=[0.1, 0.05, 0.01]), "boundaries"),
    ("piecewise_constant", dict(boundaries=[20, 10], values=[0.1, 0.05, 0.01]), "boundaries"),
    ("piecewise_constant", dict(boundaries=[], values=[0.1]), "boundaries"),
    ("piecewise_constant", dict(boundaries=[-1], values=[0.1, 0.05]), "boundaries"),
    ("piecewise_constant", dict(boundaries=[5], values=[0.1, -0.05]), "values"),
    ("polynomial", dict(decay_steps=0), "decay_steps"),
    ("polynomial", dict(power=0), "power"),
    ("polynomial", dict(end_learning_rate=-1e-3), "end_learning_rate"),
    ("cosine", dict(alpha=-0.1), "alpha"),
    ("cosine", dict(alpha=1.5), "alpha"),
    ("cosine", dict(alpha=float("nan")), "alpha"),
    ("cosine", dict(warmup_steps=10), "warmup_steps"),
    ("cosine", dict(warmup_target=0), "warmup_target"),
    ("cosine_restarts", dict(), "first_decay_steps"),
    ("cosine_restarts", dict(first_decay_steps=10, t_mul=0.5), "t_mul"),
    ("cosine_restarts", dict(first_decay_steps=10, m_mul=0), "m_mul"),
    ("cosine_restarts", dict(first_decay_steps=10, alpha=1.01), "alpha"),
    ("cosine_restarts", dict(first_decay_steps=10, t_mul=2, gamma=0.5), "gamma"),
    ("inverse_sqrt", dict(warmup_steps=0), "warmup_steps"),
    ("inverse_sqrt", dict(), "warmup_steps"),
    ("wsd", dict(decay_fraction=0), "decay_fraction"),
    ("wsd", dict(decay_fraction=1.5), "decay_fraction"),
    ("wsd", dict(min_lr_ratio=2), "min_lr_ratio"),
    ("wsd", dict(decay_shape="exponential"), "decay_shape"),
    ("wsd", dict(warmup_steps=10, warmup_fraction=0.1), "warmup_fraction"),
    ("wsd", dict(warmup_fraction=0.9, decay_fraction=0.2), "warmup_fraction"),
])
def test_validation_names_the_field(name, params, field):
    with pytest.raises(ValidationError) as info:
        METHODS[name].params(**params)
    assert field in info.value.errors()[0]["loc"]


@pytest.mark.parametrize("name,params", [("inverse_sqrt", dict(warmup_steps=10)), ("wsd", dict(warmup_fraction=0.1))])
def test_own_warmup_excludes_the_generic_one(name, params):
    with pytest.raises(ValidationError, match="own warmup"):
        METHODS[name].params(**params, warmup={"steps": 5})


def test_spec_errors_point_at_the_field():
    from lrdecay_cli.config.spec_file import from_data

    with pytest.raises(UserError, match=r"schedule\.values.*1 boundaries need 2 values"):
        from_data({"schedule": {"name": "piecewise_constant", "boundaries": [10], "values": [0.1]}}, "x.yaml")
