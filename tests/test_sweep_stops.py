"""A real `lrdecay sweep` process stopped mid-trial (SIGINT, SIGTERM, kill -9) under every executor
that runs in this machine's processes: it stops promptly, leaves no worker behind, and `--resume`
completes every trial exactly once, equal to an uninterrupted sweep of the same executor."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from typer.testing import CliRunner

from conftest import TINY, read_csv
from lrdecay_cli.cli import app
from lrdecay_cli.config.spec_file import merge_sections
from test_executors import assert_member_equals_sequential
from test_resume import SignalAfterEpoch, without_seconds

EPOCHS = 30
BASE = merge_sections(TINY, {"data": {"limit": 1300, "val_size": 500}, "model": {"name": "mlp", "hidden": [32]},
                             "train": {"epochs": EPOCHS}})
"""Epochs of 13 steps: a signal sent once a trial is 2 epochs in lands with 28 of its epochs to go, a window wide
enough for a loaded machine (with 10, a sweep could finish before the signal landed)."""
SWEEP = {"name": "s", "base": BASE, "seeds": 3,
         "variants": [{"schedule": {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.5}}]}
TRIALS = ("t000", "t001", "t002")
EXECUTORS = {"sequential": [], "vectorized": [], "processes": ["--workers", "2"]}


def sweep_args(path, runs, executor):
    return ["sweep", str(path), "--runs-dir", str(runs), "--quiet", "--executor", executor, *EXECUTORS[executor]]


def sweep_command(path, runs, executor):
    return [sys.executable, "-m", "lrdecay_cli", *sweep_args(path, runs, executor)]


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "sweep.yaml"
    path.write_text(yaml.safe_dump(SWEEP))
    return path


@pytest.fixture(scope="module")
def uninterrupted(sweep_file, tmp_path_factory):
    """uninterrupted(executor): that executor's sweep directory of the whole sweep, run once."""
    made = {}

    def get(executor):
        if executor not in made:  # in this process, as --resume runs below: no second start-up of torch
            runs = tmp_path_factory.mktemp(f"whole-{executor}")
            result = CliRunner().invoke(app, sweep_args(sweep_file, runs, executor))
            assert result.exit_code == 0, result.output
            (made[executor],) = (runs / "sweeps").iterdir()
        return made[executor]

    return get


def workers_of(pid: int) -> list[int]:
    """The live worker processes `pid` spawned (multiprocessing's spawn_main; not its resource tracker)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    spawned = b"spawn_main" in f.read()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and spawned:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def snapshot(directory):
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("signum,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
                         ids=["SIGINT", "SIGTERM", "kill -9"])
def test_a_stopped_sweep_resumes_to_the_uninterrupted_result(cli, sweep_file, uninterrupted, tmp_path, executor,
                                                             signum, exit_code):
    runs = tmp_path / "runs"
    # started with SIGINT ignored, as a script's background job is (and as a test runner may leave it): the sweep
    # installs its own handler, so Ctrl-C stops it all the same (a processes sweep once ran on to the end)
    process = subprocess.Popen(sweep_command(sweep_file, runs, executor), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:  # some trial is 2 epochs in
        if any(len(p.read_text().splitlines()) >= 3 for p in runs.glob("sweeps/*/t*/metrics.csv")):
            break
        time.sleep(0.01)
    # held still while the workers are counted and the signal sent: on a loaded machine the sweep could
    # otherwise run to its end between the check above and the signal (and exit 0)
    os.kill(process.pid, signal.SIGSTOP)
    workers = workers_of(process.pid)
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    assert (len(workers) == 2) == (executor == "processes")
    signalled = time.monotonic()
    process.send_signal(signum)
    for pid in [process.pid, *workers]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert time.monotonic() - signalled < 30  # it stops after the step in flight, not after the sweep
    if signum != signal.SIGKILL:
        assert "continue with: lrdecay sweep --resume" in stderr
    (sweep_dir,) = (runs / "sweeps").iterdir()
    time.sleep(1.5)  # a worker that outlived the sweep would go on writing
    assert not [pid for pid in workers if alive(pid)]
    before = snapshot(sweep_dir)
    time.sleep(1.0)
    assert snapshot(sweep_dir) == before
    kept = {t: read_csv(sweep_dir / t / "metrics.csv") for t in TRIALS if (sweep_dir / t / "metrics.csv").exists()}
    assert any(2 <= len(rows) < EPOCHS for rows in kept.values())
    finished = {t: (sweep_dir / t / "metrics.csv").read_bytes() for t in kept
                if json.loads((sweep_dir / t / "summary.json").read_text())["status"] == "completed"}

    resumed = cli("sweep", "--resume", sweep_dir, "--quiet", "--executor", executor, *EXECUTORS[executor])
    assert resumed.exit_code == 0, resumed.output
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed"] * 3
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == list(TRIALS)
    whole = uninterrupted(executor)
    for trial, rows in kept.items():
        after = read_csv(sweep_dir / trial / "metrics.csv")
        assert [int(r["epoch"]) for r in after] == list(range(1, EPOCHS + 1))  # every epoch once
        # continued from its checkpoint (rows with the same seconds), not restarted; a kill -9 may land
        # between an epoch's rows and its checkpoint, and then that epoch runs again
        checkpointed = len(rows) - (signum == signal.SIGKILL)
        assert after[:checkpointed] == rows[:checkpointed]
        if trial in finished:
            assert (sweep_dir / trial / "metrics.csv").read_bytes() == finished[trial]  # not run again
    for trial in TRIALS:
        if executor == "processes":  # stacks regroup on resume: equal within the float noise of stacking
            assert_member_equals_sequential(whole, sweep_dir, trial)
        else:  # the same stacks in the same order: bit for bit
            assert without_seconds(sweep_dir / trial) == without_seconds(whole / trial)
            assert (sweep_dir / trial / "lr.csv").read_bytes() == (whole / trial / "lr.csv").read_bytes()


def test_a_stacked_trial_resumes_alone_with_lrdecay_train(cli, sweep_file, uninterrupted, tmp_path):
    """A member's checkpoint is the file its single run writes: `lrdecay train --resume` continues it."""
    from lrdecay_cli.config import sweep_file as sweep_files
    from lrdecay_cli.training.loop import Planned, train_runs

    sweep, base = sweep_files.load(sweep_file)
    trials = sweep_files.expand(sweep, base, str(sweep_file))
    sweep_dir = tmp_path / "sweep"
    train_runs([Planned(t.spec, sweep_dir, t.dirname) for t in trials], SignalAfterEpoch(2))
    assert all(json.loads((sweep_dir / t / "summary.json").read_text())["status"] == "interrupted" for t in TRIALS)
    out = cli("train", "--resume", sweep_dir / "t001", "--quiet")
    assert out.exit_code == 0, out.output
    whole = uninterrupted("vectorized")
    assert_member_equals_sequential(whole, sweep_dir, "t001")  # its last epoch alone: its losses within stacking's noise


def test_a_stack_killed_while_replacing_its_checkpoints_resumes_as_it_was(sweep_file, uninterrupted, monkeypatch,
                                                                         tmp_path):
    """The moment a kill -9 of a vectorized sweep can leave members at different steps: after the first
    member's new checkpoint and before the others'. --resume still trains the three as the one stack they
    were, from epoch 1's checkpoints, and ends bit for bit equal to the uninterrupted sweep."""
    from lrdecay_cli.experiments import executors
    from lrdecay_cli.experiments import sweep as sweeps
    from lrdecay_cli.training import checkpoint
    from lrdecay_cli.training.checkpoint import state_of

    class Killed(BaseException):
        pass

    plan = sweeps.plan(sweep_file)
    sweeps.create(plan, tmp_path / "runs")
    writes = []
    real = checkpoint.write_one

    def dies_at_the_second_member_of_epoch_2(run_dir, state):
        writes.append(run_dir.name)
        if len(writes) == 8:  # rounds of 3: before training, epoch 1, then t000 of epoch 2 is written
            raise Killed
        real(run_dir, state)

    monkeypatch.setattr(checkpoint, "write_one", dies_at_the_second_member_of_epoch_2)
    with pytest.raises(Killed):
        executors.run("vectorized", plan.trials, plan.path, lambda t: None, lambda t, s: None)
    monkeypatch.undo()
    steps = {t: state_of(plan.path / t).step for t in TRIALS}
    assert steps["t000"] == 2 * steps["t001"] == 2 * steps["t002"] > 0  # one member ahead of the others
    assert all((plan.path / t / "checkpoint.prev.pt").is_file() for t in TRIALS)

    done = []
    executors.run("vectorized", plan.pending(), plan.path, lambda t: None, lambda t, s: done.append(s["status"]))
    assert done == ["completed"] * 3
    assert not any((plan.path / t / "checkpoint.prev.pt").exists() for t in TRIALS)
    whole = uninterrupted("vectorized")
    for trial in TRIALS:
        assert without_seconds(plan.path / trial) == without_seconds(whole / trial)
        assert (plan.path / trial / "lr.csv").read_bytes() == (whole / trial / "lr.csv").read_bytes()


def test_trials_interrupted_alone_resume_as_one_stack(sweep_file, uninterrupted, tmp_path):
    """Checkpoints written by single runs load into a stack (the stack keeps some parameters, and their
    optimizer state, in another memory layout): a sequential sweep stopped after epoch 2 and resumed
    vectorized ends as the uninterrupted sequential sweep, within the float noise of stacking."""
    from lrdecay_cli.experiments import executors
    from lrdecay_cli.experiments import sweep as sweeps
    from lrdecay_cli.training.loop import Planned, train_runs

    plan = sweeps.plan(sweep_file)
    sweeps.create(plan, tmp_path / "runs")
    for trial in plan.trials:
        train_runs([Planned(trial.spec, plan.path, trial.dirname)], SignalAfterEpoch(2))
    todo = plan.pending()
    assert len(executors.stacks(todo, executors.states_of(todo, plan.path))) == 1  # all at epoch 2's step: one stack
    done = []
    executors.run("vectorized", plan.pending(), plan.path, lambda t: None, lambda t, s: done.append(s["status"]))
    assert done == ["completed"] * 3
    whole = uninterrupted("sequential")
    for trial in TRIALS:
        assert_member_equals_sequential(whole, plan.path, trial)
