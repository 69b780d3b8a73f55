"""PyTorch-family schedules equal torch.optim.lr_scheduler's, stepped alongside on a dummy optimizer.

PyTorch's value at count t is the optimizer's LR read before the t-th `scheduler.step()`, as a training
loop uses it. The references are the real schedulers, so their chainable recursions are compared, not
their closed forms.
"""

import math
import random
import sys

import pytest
import torch
from pydantic import ValidationError

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules.pytorch import constant_lr_factor
from lrdecay_cli.schedules.registry import METHODS

# The dummy optimizer never steps; PyTorch warns about that on the first scheduler.step().
pytestmark = pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")

SEEDS = range(6)
EPS = sys.float_info.epsilon


def ours(name, lr=0.1, total=2000, **params):
    return METHODS[name].build(METHODS[name].params(**params), lr, total)


def torch_lrs(make_scheduler, lr: float, n: int) -> list[float]:
    """PyTorch's LR for counts 0 .. n-1."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(n - 1):
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def assert_matches(lr_at, expected: list[float], abs_tol: float = 0.0, start: int = 0):
    """Ours equals PyTorch's at counts start, start + 1, ... to 1e-9 relative (and abs_tol where given)."""
    bad = [(t, lr_at(t), theirs) for t, theirs in enumerate(expected[start:], start)
           if not math.isclose(lr_at(t), theirs, rel_tol=1e-9, abs_tol=abs_tol)]
    assert not bad, f"{len(bad)} of {len(expected) - start} counts differ, first (t, ours, PyTorch): {bad[:3]}"


S = torch.optim.lr_scheduler

# ----------------------------------------------------------------------------- multistep


@pytest.mark.parametrize("seed", SEEDS)
def test_multistep_equals_multistep_lr(seed):
    rng = random.Random(seed)
    milestones = sorted(rng.sample(range(1, 1500), rng.randint(1, 8)))
    if seed == 0:
        milestones = [1, 2, 3, 500]  # drops on consecutive counts, from the first
    gamma, lr = rng.choice([0.1, 0.5, 0.9, 1.5]), rng.uniform(1e-3, 1)
    expected = torch_lrs(lambda opt: S.MultiStepLR(opt, milestones, gamma), lr, 2000)
    lr_at = ours("multistep", lr, milestones=milestones, gamma=gamma)
    assert_matches(lr_at, expected)
    assert lr_at(0) == lr
    for k, m in enumerate(milestones):
        assert lr_at(m - 1) == pytest.approx(lr * gamma ** k) and lr_at(m) == pytest.approx(lr * gamma ** (k + 1))


# ----------------------------------------------------------------------------- ConstantLR (for classic's constant)


@pytest.mark.parametrize("seed", SEEDS)
def test_constant_lr_factor_equals_constant_lr(seed):
    rng = random.Random(seed)
    factor, total_iters, lr = rng.choice([1.0, 1 / 3, rng.random()]), rng.randint(1, 1500), rng.uniform(1e-3, 1)
    expected = torch_lrs(lambda opt: S.ConstantLR(opt, factor, total_iters), lr, 2000)
    assert_matches(lambda t: lr * constant_lr_factor(t, factor, total_iters), expected)
    assert constant_lr_factor(total_iters - 1, factor, total_iters) == factor
    assert constant_lr_factor(total_iters, factor, total_iters) == 1.0


def test_constant_lr_factor_zero():
    """factor 0 is valid in PyTorch, whose recursion then divides by zero at total_iters; ours does not."""
    assert [constant_lr_factor(t, 0.0, 3) for t in range(5)] == [0.0, 0.0, 0.0, 1.0, 1.0]


@pytest.mark.skipif("factor" not in METHODS["constant"].params.model_fields,
                    reason="classic.py's constant does not take ConstantLR's factor / total_iters yet")
def test_constant_with_factor_is_constant_lr():
    expected = torch_lrs(lambda opt: S.ConstantLR(opt, factor=0.25, total_iters=40), 0.1, 2000)
    assert_matches(ours("constant", factor=0.25, total_iters=40), expected)
    assert_matches(ours("constant", factor=0.5), torch_lrs(lambda opt: S.ConstantLR(opt, factor=0.5), 0.1, 100))
    assert ours("constant")(0) == ours("constant")(10**6) == 0.1


# ----------------------------------------------------------------------------- linear


@pytest.mark.parametrize("seed", SEEDS)
def test_linear_equals_linear_lr(seed):
    rng = random.Random(seed)
    start, end = rng.choice([(1.0, 0.0), (1 / 3, 1.0), (rng.uniform(0.01, 1), rng.uniform(0, 1))])
    total_iters, lr = rng.choice([1, 7, rng.randint(1, 2500)]), rng.uniform(1e-3, 1)
    expected = torch_lrs(lambda opt: S.LinearLR(opt, start, end, total_iters), lr, 2600)
    lr_at = ours("linear", lr, start_factor=start, end_factor=end, total_iters=total_iters)
    # With end_factor 0, PyTorch's last factor 1 + (0 - start) / (total_iters * start + (total_iters - 1) * (0 -
    # start)) is 1 - 1 up to rounding, so it ends at about +-eps * lr (measured: at most 0.75 eps * lr over
    # 2,000 random cases) instead of 0, where no relative tolerance holds. Ours ends at exactly 0.
    assert_matches(lr_at, expected, abs_tol=2 * EPS * lr)
    assert lr_at(0) == lr * start and lr_at(total_iters) == lr_at(10**6) == lr * end


def test_linear_defaults_decay_over_the_run():
    lr_at = ours("linear", lr=0.1, total=50)
    assert [lr_at(t) for t in (0, 25, 49, 50, 80)] == pytest.approx([0.1, 0.05, 0.002, 0.0, 0.0])
    assert METHODS["linear"].params().interval == "epoch"


# ----------------------------------------------------------------------------- cosine_annealing


@pytest.mark.parametrize("seed", SEEDS)
def test_cosine_annealing_equals_cosine_annealing_lr(seed):
    rng = random.Random(seed)
    T_max, lr = rng.choice([1, 2, 3, rng.randint(4, 100), rng.randint(100, 1500)]), rng.uniform(1e-3, 1)
    eta_min = rng.choice([0.0, lr * 1e-4, lr * rng.random()])
    n = max(2000, 3 * T_max + 10)  # well past T_max: the LR rises and falls again
    expected = torch_lrs(lambda opt: S.CosineAnnealingLR(opt, T_max, eta_min), lr, n)
    lr_at = ours("cosine_annealing", lr, T_max=T_max, eta_min=eta_min)
    assert_matches(lr_at, expected[:T_max + 1])
    assert_matches(lr_at, expected, abs_tol=cosine_drift(T_max, eta_min), start=T_max + 1)
    assert lr_at(0) == lr and lr_at(T_max) == pytest.approx(eta_min) and lr_at(2 * T_max) == pytest.approx(lr)


def cosine_drift(T_max: int, eta_min: float) -> float:
    """How far PyTorch's recursion may stray from the closed form once the LR rises again past T_max.

    PyTorch sets lr_t = eta_min + ratio_t * (lr_{t-1} - eta_min). Near the bottom, adding eta_min back rounds
    the tiny lr_{t-1} - eta_min by up to eps / 2 * eta_min, and the ratios of the rise then multiply that error
    by up to 2 / (1 + cos(pi * (T_max + j) / T_max)) ~ 4 * T_max**2 / (pi**2 * j**2) for the j-th count past
    T_max. Summed over j (pi**2 / 6): eps * eta_min * T_max**2 / 3, absolute. That passes 1e-9 relative once
    T_max is about 10,000 with eta_min near lr (measured: up to 0.15 eps * eta_min * T_max**2). Down to T_max
    the telescoping ratios keep PyTorch within 1e-13 relative, so there the plain tolerance holds.
    """
    return EPS * eta_min * T_max**2 / 3


def test_cosine_annealing_drift_past_a_long_T_max():
    T_max, lr = 10_000, 0.1
    expected = torch_lrs(lambda opt: S.CosineAnnealingLR(opt, T_max, eta_min=0.99 * lr), lr, 3 * T_max)
    lr_at = ours("cosine_annealing", lr, T_max=T_max, eta_min=0.99 * lr)
    assert_matches(lr_at, expected[:T_max + 1])
    assert_matches(lr_at, expected, abs_tol=cosine_drift(T_max, 0.99 * lr), start=T_max + 1)


def test_cosine_annealing_T_max_defaults_to_the_run():
    assert_matches(ours("cosine_annealing", lr=0.2, total=700),
                   torch_lrs(lambda opt: S.CosineAnnealingLR(opt, T_max=700), 0.2, 2000))


# ----------------------------------------------------------------------------- cosine_warm_restarts


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T_mult", [1, 2, 3])
def test_cosine_warm_restarts_equals_pytorch(seed, T_mult):
    rng = random.Random(seed)
    T_0, lr = rng.choice([1, 2, rng.randint(3, 50), rng.randint(50, 700)]), rng.uniform(1e-3, 1)
    eta_min = rng.choice([0.0, lr * rng.random()])
    expected = torch_lrs(lambda opt: S.CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min), lr, 2000)
    lr_at = ours("cosine_warm_restarts", lr, T_0=T_0, T_mult=T_mult, eta_min=eta_min)
    assert_matches(lr_at, expected)
    start, period = 0, T_0
    while start < 2000:  # every restart is back at lr, and the count before it is the lowest of its period
        assert lr_at(start) == lr
        assert start == 0 or lr_at(start - 1) == min(lr_at(t) for t in range(start - period // T_mult, start))
        start, period = start + period, period * T_mult


# ----------------------------------------------------------------------------- one_cycle


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize("anneal_strategy", ["cos", "linear"])
def test_one_cycle_equals_one_cycle_lr(seed, three_phase, anneal_strategy):
    rng = random.Random(seed)
    total_steps, lr = rng.randint(2000, 3000), rng.uniform(1e-3, 1)
    kw = dict(pct_start=rng.uniform(0.01, 0.49), anneal_strategy=anneal_strategy, three_phase=three_phase,
              div_factor=rng.choice([1.0, 25.0, rng.uniform(1, 100)]),
              final_div_factor=rng.choice([1e4, rng.uniform(0.5, 1e5)]))
    max_lr = rng.choice([None, rng.uniform(1e-3, 1)])
    # PyTorch ignores optimizer.lr (123 here); our lr is the peak unless max_lr is given.
    expected = torch_lrs(lambda opt: S.OneCycleLR(opt, max_lr=max_lr or lr, total_steps=total_steps,
                                                  cycle_momentum=False, **kw), 123.0, total_steps)
    lr_at = ours("one_cycle", lr, total=rng.randint(1, total_steps), max_lr=max_lr, total_steps=total_steps, **kw)
    assert_matches(lr_at, expected)
    peak = max_lr or lr
    assert lr_at(0) == pytest.approx(peak / kw["div_factor"])
    assert lr_at(total_steps - 1) == pytest.approx(peak / kw["div_factor"] / kw["final_div_factor"])
    assert lr_at(total_steps) == lr_at(10**6) == lr_at(total_steps - 1)  # PyTorch raises there


def test_one_cycle_total_steps_defaults_to_the_run_and_must_cover_it():
    expected = torch_lrs(lambda opt: S.OneCycleLR(opt, max_lr=0.5, total_steps=2000, cycle_momentum=False), 0.5, 2000)
    assert_matches(ours("one_cycle", lr=0.5, total=2000), expected)
    with pytest.raises(UserError, match=r"schedule\.total_steps: total_steps \(100\) is shorter than the run"):
        ours("one_cycle", total=101, total_steps=100)
    assert METHODS["one_cycle"].params().interval == "step"


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_rise_of_one_count(three_phase):
    """pct_start * total_steps == 1: PyTorch divides by zero at count 0; ours starts at the initial LR."""
    lr_at = ours("one_cycle", lr=1.0, total=10, total_steps=10, pct_start=0.1, three_phase=three_phase)
    assert lr_at(0) == pytest.approx(1 / 25)
    nearby = torch_lrs(lambda opt: S.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1 + 1e-15,
                                                three_phase=three_phase, cycle_momentum=False), 1.0, 10)
    assert_matches(lr_at, nearby)


# ----------------------------------------------------------------------------- cyclic


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
def test_cyclic_equals_cyclic_lr(seed, mode):
    rng = random.Random(seed)
    lr = rng.uniform(1e-3, 0.1)
    base_lr, max_lr = rng.choice([None, rng.uniform(1e-4, lr)]), lr * rng.uniform(1, 20)
    up, down = rng.choice([1, 2, rng.randint(1, 400)]), rng.choice([None, 1, rng.randint(1, 400)])
    gamma = rng.choice([1.0, 0.999, rng.uniform(0.99, 1)])
    cycle = up + (down or up)
    # triangular2 in PyTorch overflows (2.0 ** 1024) on entering cycle 1025.
    expected = torch_lrs(lambda opt: S.CyclicLR(opt, base_lr or lr, max_lr, up, down, mode, gamma,
                                                cycle_momentum=False), 123.0, min(2500, 1024 * cycle))
    lr_at = ours("cyclic", lr, base_lr=base_lr, max_lr=max_lr, step_size_up=up, step_size_down=down,
                 mode=mode, gamma=gamma)
    assert_matches(lr_at, expected)
    bottom = base_lr or lr
    assert lr_at(0) == lr_at(cycle) == lr_at(7 * cycle) == bottom
    assert lr_at(up) == pytest.approx(max_lr if mode == "triangular" else
                                      bottom + (max_lr - bottom) * (1 if mode == "triangular2" else gamma ** up))


def test_cyclic_triangular2_past_1024_cycles():
    lr_at = ours("cyclic", lr=0.1, max_lr=1.0, step_size_up=1, mode="triangular2")
    assert lr_at(2 * 1023 + 1) == 0.1 + 0.9 * 2.0 ** -1023
    assert lr_at(2 * 1024 + 1) == 0.1 + 0.9 * 2.0 ** -1024 and lr_at(10**6 + 1) == 0.1


def test_cyclic_max_lr_below_the_bottom():
    with pytest.raises(UserError, match=r"schedule\.max_lr"):
        ours("cyclic", lr=0.1, max_lr=0.05)
    assert ours("cyclic", lr=0.1, base_lr=0.01, max_lr=0.05)(0) == 0.01


# ----------------------------------------------------------------------------- polynomial_torch


@pytest.mark.parametrize("seed", SEEDS)
def test_polynomial_torch_equals_polynomial_lr(seed):
    rng = random.Random(seed)
    total_iters, power = rng.choice([1, 2, rng.randint(3, 1900)]), rng.choice([1.0, 2.0, 0.5, rng.uniform(0.1, 5)])
    lr = rng.uniform(1e-3, 1)
    expected = torch_lrs(lambda opt: S.PolynomialLR(opt, total_iters, power), lr, 2000)
    lr_at = ours("polynomial_torch", lr, total_iters=total_iters, power=power)
    assert_matches(lr_at, expected)
    assert lr_at(0) == lr and lr_at(total_iters) == lr_at(10**6) == 0.0


def test_polynomial_torch_defaults_to_the_run():
    lr_at = ours("polynomial_torch", lr=0.1, total=10, power=2.0)
    assert [lr_at(t) for t in (0, 5, 9, 10)] == pytest.approx([0.1, 0.025, 0.001, 0.0])


# ----------------------------------------------------------------------------- all of them


CASES = {
    "multistep": dict(milestones=[30, 80, 200], gamma=0.5),
    "linear": dict(start_factor=0.5, end_factor=0.1, total_iters=700),
    "cosine_annealing": dict(T_max=300, eta_min=0.001),
    "cosine_warm_restarts": dict(T_0=50, T_mult=2, eta_min=0.001),
    "one_cycle": dict(three_phase=True),
    "cyclic": dict(max_lr=0.5, step_size_up=100, step_size_down=37, mode="exp_range", gamma=0.999),
    "polynomial_torch": dict(total_iters=1000, power=0.9),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pure_functions_of_t_in_any_order(name):
    forward = ours(name, total=1500, **CASES[name])
    expected = {t: forward(t) for t in range(1500)}
    shuffled = list(expected)
    random.Random(0).shuffle(shuffled)
    fresh = ours(name, total=1500, **CASES[name])
    assert all(fresh(t) == expected[t] for t in shuffled)
    assert METHODS[name].formula and METHODS[name].origin.startswith("PyTorch")


def test_default_intervals():
    intervals = {name: METHODS[name].params(**CASES[name]).interval for name in CASES}
    assert intervals == {"multistep": "epoch", "linear": "epoch", "cosine_annealing": "epoch",
                         "cosine_warm_restarts": "epoch", "one_cycle": "step", "cyclic": "step",
                         "polynomial_torch": "epoch"}


@pytest.mark.parametrize("name,params,field", [
    ("multistep", dict(milestones=[]), "milestones"),
    ("multistep", dict(milestones=[10, 10]), "milestones"),
    ("multistep", dict(milestones=[20, 10]), "milestones"),
    ("multistep", dict(milestones=[0, 10]), "milestones"),
    ("multistep", dict(milestones=[10], gamma=-0.1), "gamma"),
    ("multistep", dict(milestones=[10], gamma=0), "gamma"),
    ("linear", dict(start_factor=0), "start_factor"),
    ("linear", dict(start_factor=1.5), "start_factor"),
    ("linear", dict(end_factor=-0.1), "end_factor"),
    ("linear", dict(total_iters=0), "total_iters"),
    ("cosine_annealing", dict(T_max=0), "T_max"),
    ("cosine_annealing", dict(eta_min=-1e-3), "eta_min"),
    ("cosine_annealing", dict(eta_min=float("nan")), "eta_min"),
    ("cosine_warm_restarts", dict(), "T_0"),
    ("cosine_warm_restarts", dict(T_0=0), "T_0"),
    ("cosine_warm_restarts", dict(T_0=10, T_mult=0), "T_mult"),
    ("cosine_warm_restarts", dict(T_0=10, T_mult=1.5), "T_mult"),
    ("cosine_warm_restarts", dict(T_0=10, eta_min=-1), "eta_min"),
    ("one_cycle", dict(pct_start=0), "pct_start"),
    ("one_cycle", dict(pct_start=1), "pct_start"),
    ("one_cycle", dict(pct_start=-0.3), "pct_start"),
    ("one_cycle", dict(pct_start=0.5, three_phase=True), "three_phase"),
    ("one_cycle", dict(max_lr=0), "max_lr"),
    ("one_cycle", dict(total_steps=0), "total_steps"),
    ("one_cycle", dict(anneal_strategy="cosine"), "anneal_strategy"),
    ("one_cycle", dict(div_factor=0.5), "div_factor"),
    ("one_cycle", dict(final_div_factor=0), "final_div_factor"),
    ("one_cycle", dict(cycle_momentum=False), "cycle_momentum"),
    ("cyclic", dict(), "max_lr"),
    ("cyclic", dict(max_lr=-1), "max_lr"),
    ("cyclic", dict(base_lr=0.1, max_lr=0.05), "max_lr"),
    ("cyclic", dict(max_lr=0.5, step_size_up=0), "step_size_up"),
    ("cyclic", dict(max_lr=0.5, step_size_down=0), "step_size_down"),
    ("cyclic", dict(max_lr=0.5, mode="exp"), "mode"),
    ("cyclic", dict(max_lr=0.5, gamma=1.1), "gamma"),
    ("cyclic", dict(max_lr=0.5, gamma=0), "gamma"),
    ("polynomial_torch", dict(total_iters=0), "total_iters"),
    ("polynomial_torch", dict(power=0), "power"),
])
def test_validation_names_the_field(name, params, field):
    with pytest.raises(ValidationError) as info:
        METHODS[name].params(**params)
    assert field in info.value.errors()[0]["loc"]


@pytest.mark.parametrize("name,params", [("cosine_annealing", {}), ("cosine_warm_restarts", dict(T_0=10))])
def test_eta_min_above_lr(name, params):
    with pytest.raises(UserError, match=r"schedule\.eta_min"):
        ours(name, lr=0.01, eta_min=0.02, **params)
    assert ours(name, lr=0.01, eta_min=0.01, **params)(7) == 0.01


def test_spec_errors_point_at_the_field():
    from lrdecay_cli.config.spec_file import from_data

    with pytest.raises(UserError, match=r"schedule\.milestones.*strictly increasing"):
        from_data({"schedule": {"name": "multistep", "milestones": [30, 20]}}, "x.yaml")
