"""The vectorized executor: one stacked model per group, each member equal to its sequential run."""

import csv
import gc
import io
import json

import pytest
import torch
import yaml

from conftest import TINY, assert_same_lrs_close_losses, read_csv, step_lrs
from lrdecay_cli.config.spec_file import from_data
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.training.stacked import stack_key

BASE = {**TINY, "model": {"name": "mlp", "hidden": [32]}, "train": {**TINY["train"], "epochs": 2}}


def run_both(cli, tmp_path, base=BASE, **sweep):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "v", "base": base, **sweep}))
    dirs = {}
    for executor in ("sequential", "vectorized"):
        out = cli("sweep", path, "--runs-dir", tmp_path / executor, "--executor", executor, "--quiet")
        assert out.exit_code in (0, 1), out.output
        (dirs[executor],) = (tmp_path / executor / "sweeps").iterdir()
    return dirs["sequential"], dirs["vectorized"]


def read_csv_text(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def assert_member_equals_sequential(seq, vec, trial, rel=2e-3, step_rel=None):
    """lr.csv's LRs identical; losses and metrics within float noise: batched matmuls sum in another order
    than one model's, and 80 optimizer steps amplify that rounding to ~1e-4 relative in the losses (one
    step's loss, a single batch's, may drift further: `step_rel`, default `rel`)."""
    assert_same_lrs_close_losses(seq / trial / "lr.csv", vec / trial / "lr.csv", rel=step_rel or rel)
    a, b = read_csv(seq / trial / "metrics.csv"), read_csv(vec / trial / "metrics.csv")
    assert len(a) == len(b)
    for row_a, row_b in zip(a, b):
        for column in ("train_loss", "val_loss"):
            assert float(row_b[column]) == pytest.approx(float(row_a[column]), rel=rel), (trial, column)
        for column in ("train_acc", "val_acc"):  # a few images of 2,500 / 500 may flip
            assert float(row_b[column]) == pytest.approx(float(row_a[column]), abs=0.006), (trial, column)
    sa, sb = (json.loads((d / trial / "summary.json").read_text()) for d in (seq, vec))
    assert sa["status"] == sb["status"] and sa["diverged"] == sb["diverged"]
    if sa["test_acc"] is not None:
        assert sb["test_acc"] == pytest.approx(sa["test_acc"], abs=2e-3)


def test_sgd_members_with_their_own_schedules_momenta_and_a_diverging_one(cli, tmp_path):
    seq, vec = run_both(cli, tmp_path, seeds=2, variants=[
        {"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}, "optimizer": {"momentum": 0.0}},
        {"schedule": {"name": "plateau", "patience": 0, "factor": 0.5}, "optimizer": {"momentum": 0.5, "weight_decay": 1e-3}},
        {"schedule": {"name": "exponential", "decay_steps": 7, "decay_rate": 0.8}, "optimizer": {"nesterov": True}},
        {"optimizer": {"name": "sgd", "lr": 1.0e6}},
    ])
    rows = read_csv(vec / "results.csv")
    assert len(rows) == 8
    assert [r["status"] for r in rows] == [r["status"] for r in read_csv(seq / "results.csv")]
    assert [r["status"] for r in rows] == ["completed"] * 6 + ["diverged"] * 2
    for row in rows:
        assert_member_equals_sequential(seq, vec, row["trial"])


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_family_members(cli, tmp_path, name):
    seq, vec = run_both(cli, tmp_path, seeds=2, variants=[
        {"optimizer": {"name": name, "lr": 0.003, "weight_decay": 0.01}},
        {"optimizer": {"name": name, "lr": 0.001, "betas": [0.8, 0.99], "eps": 1e-6},
         "schedule": {"name": "inverse_time", "decay_steps": 10, "decay_rate": 0.5}},
    ])
    for row in read_csv(vec / "results.csv"):
        assert row["status"] == "completed"
        assert_member_equals_sequential(seq, vec, row["trial"], rel=5e-3)


def test_dropout_members_differ_in_masks_but_agree_in_outcome(cli, tmp_path):
    base_dropout = {"model": {"name": "mlp", "hidden": [64], "dropout": 0.2}}
    seq, vec = run_both(cli, tmp_path, seeds=3, variants=[base_dropout])
    for row in read_csv(vec / "results.csv"):
        trial = row["trial"]
        assert step_lrs(vec / trial / "lr.csv") == step_lrs(seq / trial / "lr.csv")  # the losses: other masks
        a = json.loads((seq / trial / "summary.json").read_text())
        b = json.loads((vec / trial / "summary.json").read_text())
        assert b["test_acc"] == pytest.approx(a["test_acc"], abs=0.03)  # same recipe, other dropout masks


@pytest.mark.parametrize("executor", ["sequential", "vectorized"])
def test_a_sweep_in_this_process_reads_the_data_once(cli, tmp_path, monkeypatch, executor):
    from lrdecay_cli.training import data

    def splits_alive():
        gc.collect()
        return {id(o) for o in gc.get_objects() if type(o) is data.Splits}

    before = splits_alive()  # a session fixture may hold its own
    reads = []
    real_read = data._read_idx
    monkeypatch.setattr(data, "_read_idx", lambda path: reads.append(path.name) or real_read(path))
    path = tmp_path / "sweep.yaml"  # four trials, two stacks under vectorized (two batch sizes)
    path.write_text(yaml.safe_dump({"name": "once", "base": {**BASE, "train": {**BASE["train"], "epochs": 1}},
                                    "grid": {"optimizer.lr": [0.1, 0.05], "train.batch_size": [32, 64]}}))
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs", "--executor", executor, "--quiet")
    assert out.exit_code == 0, out.output
    (sweep_dir,) = (tmp_path / "runs" / "sweeps").iterdir()
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed"] * 4
    assert sorted(reads) == sorted(data.MNIST_SHA256)  # each IDX file once, for all four trials
    assert not splits_alive() - before  # the sweep holds nothing of its own once it is over


def test_stack_keys():
    spec = from_data(BASE, "t")
    assert stack_key(spec) == stack_key(from_data({**BASE, "seed": 5}, "t"))
    assert stack_key(spec) != stack_key(from_data({**BASE, "train": {**BASE["train"], "batch_size": 32}}, "t"))
    assert stack_key(from_data({**BASE, "optimizer": {"name": "rmsprop"}}, "t")) is not None
    assert stack_key(from_data({**BASE, "train": {**BASE["train"], "compile": True}}, "t")) is None
    assert stack_key(spec) != stack_key(from_data({**BASE, "data": {**BASE["data"], "normalize": "unit"}}, "t"))
    assert stack_key(spec) != stack_key(from_data({**BASE, "model": {**BASE["model"], "init": "glorot_uniform"}}, "t"))


def test_glorot_members_start_from_their_single_runs_weights():
    from lrdecay_cli.training.stacked import StackedTrainer
    from lrdecay_cli.training.trainer import SingleTrainer as Trainer

    specs = [from_data({**BASE, "seed": seed, "data": {"limit": 300, "val_size": 30},
                               "model": {"name": "mlp", "hidden": [32], "init": "glorot_uniform"}}, "t")
             for seed in (4, 5)]
    for spec, member in zip(specs, StackedTrainer(specs).model_states(), strict=True):
        single = Trainer([spec]).model_states()[0]
        assert set(single) == set(member) and all(torch.equal(single[k], member[k]) for k in single)
        assert all(not member[k].any() for k in member if k.endswith("bias"))


def test_val_size_0_members_equal_their_sequential_runs(cli, tmp_path):
    base = {**BASE, "data": {"limit": 640, "val_size": 0, "normalize": "unit"},
            "model": {"name": "mlp", "hidden": [32], "init": "glorot_uniform"}, "train": {**BASE["train"], "epochs": 3}}
    seq, vec = run_both(cli, tmp_path, base=base, variants=[
        {"schedule": {"name": "plateau", "monitor": "train_loss", "patience": 0, "factor": 0.5, "threshold": 0.99}},
        {"schedule": {"name": "exponential", "decay_steps": 10, "decay_rate": 0.8}},
    ])
    assert len({stack_key(t.spec) for t in sweeps.reopen(vec).trials}) == 1  # one stack of 2
    for row in read_csv(vec / "results.csv"):
        trial = row["trial"]
        assert row["status"] == "completed" and row["best_val_acc"] == row["final_val_loss"] == ""
        assert_same_lrs_close_losses(seq / trial / "lr.csv", vec / trial / "lr.csv", rel=2e-3)
        a, b = read_csv(seq / trial / "metrics.csv"), read_csv(vec / trial / "metrics.csv")
        assert [(r["val_loss"], r["val_acc"]) for r in a + b] == [("", "")] * 6
        assert [float(r["train_loss"]) for r in b] == pytest.approx([float(r["train_loss"]) for r in a], rel=2e-3)
        sa, sb = (json.loads((d / trial / "summary.json").read_text()) for d in (seq, vec))
        assert (sb["train_size"], sb["val_size"], sb["best_val_acc"]) == (sa["train_size"], 0, None) == (640, 0, None)
        assert sb["test_acc"] == pytest.approx(sa["test_acc"], abs=2e-3)
    plateau_lrs = [float(r["lr"]) for r in read_csv(vec / "t000" / "lr.csv")]
    assert plateau_lrs[-1] == 0.05 and plateau_lrs[0] == 0.1  # cut on the train loss, stacked too
    assert "no validation set (data.val_size 0)" in (vec / "leaderboard.csv").read_text()
    by_val = cli("compare", vec)
    assert by_val.exit_code == 0 and "compare them with --metric test_acc" in by_val.stdout
    by_test = cli("compare", vec, "--metric", "test_acc", "--csv")
    assert by_test.exit_code == 0 and [r["n"] for r in read_csv_text(by_test.stdout)] == ["1", "1"]
    assert cli("plot", vec, "--out", tmp_path / "plots").exit_code == 0


@pytest.mark.parametrize("optimizer", [
    [{"name": "rmsprop", "lr": 0.001}, {"name": "rmsprop", "lr": 0.002, "momentum": 0.5, "centered": True}],
    [{"name": "adadelta"}, {"name": "adadelta", "lr": 0.5, "rho": 0.95, "weight_decay": 1e-4}],
    [{"name": "adam", "lr": 0.002, "amsgrad": True}, {"name": "adam", "lr": 0.001, "amsgrad": False}],
])
def test_every_optimizer_stacks(cli, tmp_path, optimizer):
    seq, vec = run_both(cli, tmp_path, variants=[{"optimizer": o} for o in optimizer])
    keys = {stack_key(t.spec) for t in sweeps.reopen(vec).trials}
    assert len(keys) == 1 and None not in keys  # one stack
    for row in read_csv(vec / "results.csv"):
        assert row["status"] == "completed"
        assert_member_equals_sequential(seq, vec, row["trial"], rel=5e-3)


def _worker_pids() -> list[int]:
    """This process's spawned pool workers (multiprocessing's spawn_main in their command line)."""
    import os

    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == os.getpid() and b"spawn_main" in cmdline:
            pids.append(int(entry))
    return pids


@pytest.mark.parametrize("retries", [0, 1])
def test_a_worker_killed_mid_trial(cli, tmp_path, retries):
    import os
    import signal
    import threading
    import time

    epochs = 12
    base = {**BASE, "data": {"limit": 1300, "val_size": 500}, "train": {**BASE["train"], "epochs": epochs}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "k", "base": base, "seeds": 3}))
    runs = tmp_path / "runs"

    def epochs_done(metrics) -> int:
        return len(metrics.read_text().splitlines()) - 1

    def trainer_of(run) -> int | None:
        """The worker training `run`: the PID its .lock names (rundir.fs.locked), while that worker lives."""
        try:
            pid = int((run / ".lock").read_text())
        except (OSError, ValueError):  # not locked yet, or being written, or released
            return None
        return pid if pid in _worker_pids() else None

    def kill_one_worker_once_training():
        """Once every trial is past its first epoch (the killed one has a checkpoint, which the resume below
        checks), SIGKILL the worker of a trial short of its last epoch, held still (SIGSTOP) while that is
        read: the kill never lands on a worker that has finished its stack and is exiting."""
        deadline = time.time() + 120
        while time.time() < deadline:
            metrics = list(runs.glob("sweeps/*/t00*/metrics.csv"))
            if len(metrics) == 3 and all(epochs_done(p) >= 1 for p in metrics):
                for trial in metrics:
                    pid = trainer_of(trial.parent)
                    if pid is None:
                        continue
                    os.kill(pid, signal.SIGSTOP)
                    if epochs_done(trial) < epochs:
                        os.kill(pid, signal.SIGKILL)
                        return
                    os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_once_training)
    killer.start()
    out = cli("sweep", path, "--runs-dir", runs, "--executor", "processes", "--workers", "2",
              "--retries", str(retries), "--quiet")
    killer.join()
    (sweep_dir,) = (runs / "sweeps").iterdir()
    statuses = [r["status"] for r in read_csv(sweep_dir / "results.csv")]
    if retries:
        assert out.exit_code == 0, out.output
        assert statuses == ["completed"] * 3
    else:
        assert out.exit_code == 1 and "failed" in statuses and "completed" in statuses
        failed = [r for r in read_csv(sweep_dir / "results.csv") if r["status"] == "failed"]
        assert all("worker process died" in r["message"] for r in failed)
        import torch

        if torch.get_num_threads() > 1:  # its workers had a share of the cores each; this process has them all
            refused = cli("sweep", "--resume", sweep_dir, "--quiet", "--executor", "sequential")
            assert refused.exit_code == 2 and "CPU threads" in refused.stderr
        assert cli("sweep", "--resume", sweep_dir, "--quiet", "--executor", "processes", "--workers", "2").exit_code == 0
        assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed"] * 3
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["t000", "t001", "t002"]


def test_a_stack_evaluates_within_epochs_as_its_sequential_runs_do(cli, tmp_path):
    seq, vec = run_both(cli, tmp_path, base={**BASE, "train": {**BASE["train"], "evals_per_epoch": 2}}, seeds=2,
                        variants=[{"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}}])
    assert len({stack_key(t.spec) for t in sweeps.reopen(vec).trials}) == 1  # one stack of 2
    for trial in ("t000", "t001"):
        assert [(r["epoch"], r["step"]) for r in read_csv(vec / trial / "metrics.csv")] == [
            ("1", "20"), ("1", "40"), ("2", "60"), ("2", "80")]
        assert_member_equals_sequential(seq, vec, trial)
