"""Schedule-free optimizers (the `schedulefree` package): they learn, are evaluated at their averaged weights,
resume bit for bit, alone and stacked, and take their LR (warmup too) from the schedule."""

import inspect

import pytest
import schedulefree
import torch

from conftest import TINY, read_csv
from lrdecay_cli.config.spec import AdamWScheduleFreeSpec, SgdScheduleFreeSpec
from lrdecay_cli.config.spec_file import from_data, merge_sections
from lrdecay_cli.training import checkpoint
from lrdecay_cli.training.loop import Planned, continuing, resume, train, train_runs
from lrdecay_cli.training.optim import OPTIMIZERS, hyper_parameters
from lrdecay_cli.training.trainer import SingleTrainer
from test_executors import BASE, assert_member_equals_sequential, run_both
from test_resume import SignalAfterEpoch, without_seconds

OPTIMIZER = {"sgd_schedulefree": {"name": "sgd_schedulefree", "lr": 0.5},
             "adamw_schedulefree": {"name": "adamw_schedulefree", "lr": 0.003, "weight_decay": 0.01}}
WARMUP = {"name": "constant", "warmup": {"steps": 50}}
"""A warmup longer than an epoch (40 steps): a cut after epoch 1 lands inside it."""


def sf_spec(name: str, **changes):
    return from_data(merge_sections(TINY, merge_sections({"optimizer": OPTIMIZER[name], "schedule": WARMUP},
                                                         changes)), "test")


@pytest.mark.parametrize("spec_class", [SgdScheduleFreeSpec, AdamWScheduleFreeSpec])
def test_the_specs_defaults_are_the_packages(spec_class):
    """Every parameter but the package's own warmup (the schedule's) and foreach, with the package's default."""
    spec = spec_class()
    signature = inspect.signature(OPTIMIZERS[spec.name]).parameters
    assert set(signature) - set(hyper_parameters(spec)) == {"params", "warmup_steps", "foreach"}
    for key, value in hyper_parameters(spec).items():
        assert value == signature[key].default, key


def test_the_schedules_warmup_is_the_packages_own():
    """The package scales param_group lr inside its step (warmup_steps) and weighs its average by the largest LR so
    far: the schedule setting that lr before each step, with warmup_steps 0, gives the same weights bit for bit."""
    torch.manual_seed(0)
    start, grads = torch.randn(20), [torch.randn(20) for _ in range(8)]
    ends = []
    for warmup_steps, lr_at in ((5, lambda k: 0.1), (0, lambda k: 0.1 * min(k + 1, 5) / 5)):
        p = torch.nn.Parameter(start.clone())
        optimizer = schedulefree.SGDScheduleFree([p], lr=0.1, warmup_steps=warmup_steps)
        optimizer.train()
        for k, grad in enumerate(grads):
            optimizer.param_groups[0]["lr"] = lr_at(k)
            p.grad = grad.clone()
            optimizer.step()
        optimizer.eval()
        ends.append(p.detach().clone())
    assert torch.equal(*ends)


@pytest.mark.parametrize("name", OPTIMIZER)
def test_both_learn_at_the_schedules_lr(tmp_path, name):
    run = train(sf_spec(name), tmp_path)
    assert run.summary["status"] == "completed"
    assert run.summary["test_acc"] > 0.85 and run.summary["best_val_acc"] > 0.85  # chance is 0.1
    lr = OPTIMIZER[name]["lr"]
    ramp = [lr * (0.1 + 0.9 * step / 50) for step in range(50)] + [lr] * 30
    assert [float(row["lr"]) for row in read_csv(run.path / "lr.csv")] == pytest.approx(ramp, rel=1e-15)


@pytest.mark.parametrize("name", OPTIMIZER)
def test_evaluation_is_at_the_averaged_weights_and_leaves_training_as_it_was(tmp_path, name):
    spec = sf_spec(name)
    run = train(spec, tmp_path)
    state = checkpoint.read(run.path / "checkpoint.pt")
    assert state["optimizer"]["param_groups"][0]["train_mode"]  # checkpointed at the training point y
    trainer = SingleTrainer([spec])
    trainer.load_states([state])
    y = [p.detach().clone() for p in trainer.params]
    data = trainer.data
    recorded = read_csv(run.path / "metrics.csv")[-1]
    val_loss, val_acc = trainer.evaluate(data.val_x, data.val_y)
    assert (val_loss[0], val_acc[0]) == (float(recorded["val_loss"]), float(recorded["val_acc"]))
    assert all(torch.equal(p, kept) for p, kept in zip(trainer.params, y))  # bit for bit back at y
    at_y = trainer._evaluate(data.val_x, data.val_y)
    assert at_y[0] != val_loss
    trainer.optimizer.eval()  # the package's own switch to x
    assert trainer._evaluate(data.val_x, data.val_y) == (val_loss, val_acc)
    assert not any(torch.equal(p, kept) for p, kept in zip(trainer.params, y))


@pytest.mark.parametrize("name", OPTIMIZER)
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, name):
    spec = sf_spec(name, train={"epochs": 3})
    whole = train(spec, tmp_path / "whole")
    cut = train(spec, tmp_path / "cut", SignalAfterEpoch(1))
    assert cut.summary["status"] == "interrupted"
    done = resume(cut.path)
    assert without_seconds(done.path) == without_seconds(whole.path)
    assert (done.path / "lr.csv").read_bytes() == (whole.path / "lr.csv").read_bytes()
    assert done.summary["test_acc"] == whole.summary["test_acc"]


def test_a_stack_interrupted_and_resumed_equals_its_uninterrupted_stack(tmp_path):
    specs = [sf_spec("sgd_schedulefree", seed=seed, optimizer={"lr": lr}, train={"epochs": 3})
             for seed, lr in ((0, 0.5), (1, 1.0))]
    whole = train_runs([Planned(spec, tmp_path / "whole", f"t{k}") for k, spec in enumerate(specs)])
    train_runs([Planned(spec, tmp_path / "cut", f"t{k}") for k, spec in enumerate(specs)], SignalAfterEpoch(1))
    done = train_runs([continuing(tmp_path / "cut" / f"t{k}") for k in range(len(specs))])
    for a, b in zip(whole, done):
        assert b.summary["status"] == "completed"
        assert without_seconds(b.path) == without_seconds(a.path)
        assert (b.path / "lr.csv").read_bytes() == (a.path / "lr.csv").read_bytes()


def test_a_vectorized_sweep_equals_the_sequential_one(cli, tmp_path):
    base = {**BASE, "schedule": WARMUP}
    seq, vec = run_both(cli, tmp_path, base=base, seeds=2, variants=[{"optimizer": o} for o in OPTIMIZER.values()])
    rows = read_csv(vec / "results.csv")
    assert [row["status"] for row in rows] == ["completed"] * 4
    for row in rows:
        # one batch's loss drifts further from the float order of batched products than an epoch's (0.7% seen)
        assert_member_equals_sequential(seq, vec, row["trial"], rel=5e-3, step_rel=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("name", OPTIMIZER)
def test_cuda_learns_alone_and_stacked(tmp_path, name):
    """The package's eval()/train() and state on CUDA (bench/device_check.sh runs it; the same test on the CPU
    passes as well)."""
    specs = [sf_spec(name, seed=seed, train={"device": "cuda"}) for seed in (0, 1)]
    alone = train(specs[0], tmp_path / "alone")
    stack = train_runs([Planned(spec, tmp_path / "stack", f"t{k}") for k, spec in enumerate(specs)])
    assert alone.summary["device"].startswith("cuda") and alone.summary["test_acc"] > 0.85
    assert all(run.summary["status"] == "completed" and run.summary["test_acc"] > 0.85 for run in stack)
    assert stack[0].summary["test_acc"] == pytest.approx(alone.summary["test_acc"], abs=0.01)
