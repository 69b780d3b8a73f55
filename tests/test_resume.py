"""Interrupted runs resume exactly: the same metrics.csv and lr.csv, bit for bit, as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, read_csv, run_dirs
from lrdecay_cli.config.spec_file import from_data, merge_sections
from lrdecay_cli.training.loop import TrainObserver
from lrdecay_cli.training.loop import resume, train


class SignalAfterEpoch(TrainObserver):
    """Sends this process a signal when epoch `epoch` ends, as a user's Ctrl-C would arrive."""

    def __init__(self, epoch: int, signum: int = signal.SIGINT):
        self.epoch, self.signum = epoch, signum

    def on_epoch_end(self, row):
        if row["epoch"] == self.epoch:
            os.kill(os.getpid(), self.signum)


def without_seconds(path):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_csv(path / "metrics.csv")]


def assert_same_lr_csv(run, reference):
    """lr.csv to the byte, each step's loss included (a resumed run's first steps repeat none and skip none)."""
    rows, expected = read_csv(run / "lr.csv"), read_csv(reference / "lr.csv")
    assert [r["loss"] for r in rows] == [r["loss"] for r in expected] and all(r["loss"] for r in rows)
    assert (run / "lr.csv").read_bytes() == (reference / "lr.csv").read_bytes()


CASES = {
    "step": {"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}},
    "exponential": {"schedule": {"name": "exponential", "decay_steps": 10, "decay_rate": 0.7}},
    "plateau": {"schedule": {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.5}},
    "one_cycle": {"schedule": {"name": "one_cycle", "pct_start": 0.4}, "optimizer": {"name": "adam", "lr": 0.01}},
    # evaluations within epochs: a cut epoch's are discarded with it, and the resumed run writes them again
    "evals_per_epoch": {"schedule": {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.5},
                        "train": {"evals_per_epoch": 4}},
    # 4 steps an epoch (200 images) are dropout masks enough to cross the cut; the 10,000 test images,
    # evaluated by each finished run, are most of its time (in batches of 100: the CNN's faster size on a CPU)
    "cnn_dropout": {"model": {"name": "cnn"}, "data": {"limit": 264, "val_size": 64},
                    "optimizer": {"name": "adadelta", "lr": 1.0}, "train": {"eval_batch_size": 100}},
}


def case_spec(case: str):
    return from_data(merge_sections(TINY, merge_sections({"train": {"epochs": 3}}, CASES[case])), "test")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """uninterrupted(case): that case's run trained without a stop, once for every stopping point."""
    made = {}

    def get(case):
        if case not in made:
            made[case] = train(case_spec(case), tmp_path_factory.mktemp(f"whole-{case}"))
        return made[case]

    return get


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("stop_after", [1, 2])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, uninterrupted, case, stop_after):
    spec = case_spec(case)
    whole = uninterrupted(case)
    cut = train(spec, tmp_path / "cut", SignalAfterEpoch(stop_after))
    assert cut.summary["status"] == "interrupted" and cut.summary["epochs_completed"] == stop_after
    assert [r["epoch"] for r in read_csv(cut.path / "metrics.csv")][-1] == str(stop_after)  # none of the cut epoch
    done = resume(cut.path)
    assert done.summary["status"] == "completed"
    assert without_seconds(done.path) == without_seconds(whole.path)
    assert_same_lr_csv(done.path, whole.path)
    assert done.summary["test_acc"] == whole.summary["test_acc"]
    assert done.summary["best_val_acc"] == whole.summary["best_val_acc"]


MANY_SHORT_EPOCHS = {"data": {"limit": 1000, "val_size": 200}, "train": {"epochs": 30}}
"""30 epochs of 13 steps: a signal sent once the first epochs are on disk lands with many still to go."""


def test_sigterm_in_a_real_process_then_resume_through_the_cli(cli, write_spec, tmp_path):
    spec = write_spec(MANY_SHORT_EPOCHS)
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "lrdecay_cli", "train", str(spec), "--runs-dir", str(runs),
                                "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the first epoch is on disk
        metrics = list(runs.glob("*/metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "--resume" in err and len(err.strip().splitlines()) == 1
    (run,) = run_dirs(runs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    kept = len(read_csv(run / "metrics.csv"))
    assert 1 <= kept < 30 and int(read_csv(run / "lr.csv")[-1]["step"]) == kept * 13 - 1  # ceil(800 / 64) steps

    result = cli("train", "--resume", run, "--quiet")
    assert result.exit_code == 0, result.output
    whole = cli("train", spec, "--runs-dir", tmp_path / "whole", "--quiet")
    assert whole.exit_code == 0
    (reference,) = run_dirs(tmp_path / "whole")
    assert without_seconds(run) == without_seconds(reference)
    assert_same_lr_csv(run, reference)


def test_resume_of_a_completed_run_does_nothing(cli, write_spec, tmp_path):
    assert cli("train", write_spec({"train": {"epochs": 1}}), "--runs-dir", tmp_path, "--quiet").exit_code == 0
    (run,) = run_dirs(tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = cli("train", "--resume", run, "--quiet")
    assert result.exit_code == 0 and "already completed; nothing to resume" in result.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_a_changed_spec_is_refused_unless_forced(cli, write_spec, tmp_path):
    spec = from_data(merge_sections(TINY, {"train": {"epochs": 3}}), "test")
    cut = train(spec, tmp_path / "runs", SignalAfterEpoch(1))
    refused = cli("train", "--resume", cut.path, "--set", "optimizer.lr=0.05", "--set", "train.epochs=4")
    assert refused.exit_code == 2
    assert "differs from the run's config.yaml in optimizer.lr, train.epochs" in refused.stderr
    assert json.loads((cut.path / "summary.json").read_text())["status"] == "interrupted"
    forced = cli("train", "--resume", cut.path, "--set", "train.epochs=4", "--force", "--quiet")
    assert forced.exit_code == 0, forced.output
    assert len(read_csv(cut.path / "metrics.csv")) == 4 and "epochs: 4" in (cut.path / "config.yaml").read_text()


def test_rows_written_after_the_checkpoint_are_discarded(tmp_path):
    """A kill -9 between the CSV flush and the checkpoint must not count an epoch twice."""
    import torch

    spec = from_data(merge_sections(TINY, {"train": {"epochs": 3}}), "test")
    whole = train(spec, tmp_path / "whole")
    cut = train(spec, tmp_path / "cut", SignalAfterEpoch(2))
    state = torch.load(cut.path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    # as if the process died after flushing epoch 2's rows but before its checkpoint: epoch 1's checkpoint
    import shutil

    first = train(spec, tmp_path / "one", SignalAfterEpoch(1))
    shutil.copy(first.path / "checkpoint.pt", cut.path / "checkpoint.pt")
    assert len(read_csv(cut.path / "metrics.csv")) == 2
    done = resume(cut.path)
    assert without_seconds(done.path) == without_seconds(whole.path)
    assert (done.path / "lr.csv").read_bytes() == (whole.path / "lr.csv").read_bytes()


def test_an_interrupted_sweep_resumes_its_trial_from_the_checkpoint(cli, tmp_path, monkeypatch):
    import yaml

    from lrdecay_cli.experiments import sweep as sweeps
    from lrdecay_cli.experiments import executors

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": merge_sections(TINY, {"train": {"epochs": 3}}), "seeds": 3}))
    real = executors.run_stack
    calls = []

    def interrupt_second_trial(trials, sweep_dir, states, force=False, observer=None, kept=None):
        (trial,) = trials
        calls.append(trial.dirname)
        if trial.dirname == "t001" and calls.count("t001") == 1:
            from lrdecay_cli.training.loop import train

            train(trial.spec, sweep_dir, SignalAfterEpoch(2), dirname=trial.dirname)
            raise KeyboardInterrupt
        return real(trials, sweep_dir, states, force, observer, kept)

    monkeypatch.setattr(executors, "run_stack", interrupt_second_trial)
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert out.exit_code == 130 and "--resume" in out.stderr
    (sweep_dir,) = (tmp_path / "runs" / "sweeps").iterdir()
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed", "interrupted", "pending"]
    kept_t000 = (sweep_dir / "t000" / "metrics.csv").read_bytes()
    interrupted_rows = read_csv(sweep_dir / "t001" / "metrics.csv")
    assert len(interrupted_rows) == 2

    out = cli("sweep", "--resume", sweep_dir, "--quiet")
    assert out.exit_code == 0, out.output
    assert calls == ["t000", "t001", "t001", "t002"]  # t000 not run twice
    assert (sweep_dir / "t000" / "metrics.csv").read_bytes() == kept_t000
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["completed"] * 3
    reference = train(sweeps.reopen(sweep_dir).trials[1].spec, tmp_path / "ref")
    assert read_csv(sweep_dir / "t001" / "metrics.csv")[:2] == interrupted_rows  # resumed (same seconds), not restarted
    assert without_seconds(sweep_dir / "t001") == without_seconds(reference.path)
    assert (sweep_dir / "t001" / "lr.csv").read_bytes() == (reference.path / "lr.csv").read_bytes()


def test_kill_9_leaves_a_parseable_run_that_resumes_exactly(cli, write_spec, tmp_path):
    spec = write_spec(MANY_SHORT_EPOCHS)
    runs = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, "-m", "lrdecay_cli", "train", str(spec), "--runs-dir", str(runs),
                                "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = list(runs.glob("*/metrics.csv"))
        if metrics and len(metrics[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    (run,) = run_dirs(runs)
    summary = json.loads((run / "summary.json").read_text())  # every file parses after a kill -9
    assert summary["status"] == "running"
    assert read_csv(run / "metrics.csv") and read_csv(run / "lr.csv")
    result = cli("train", "--resume", run, "--quiet")
    assert result.exit_code == 0, result.output
    assert cli("train", spec, "--runs-dir", tmp_path / "whole", "--quiet").exit_code == 0
    (reference,) = run_dirs(tmp_path / "whole")
    assert without_seconds(run) == without_seconds(reference)
    assert_same_lr_csv(run, reference)


def test_concurrent_runs_never_share_a_directory(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from datetime import datetime, timezone

    from lrdecay_cli.rundir.record import RunDir

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: RunDir.create(tmp_path, "same", now).path, range(32)))
    assert len(set(paths)) == 32 and all(p.is_dir() for p in paths)


def test_a_run_written_before_lr_csv_had_the_loss_resumes_with_it(tmp_path, uninterrupted):
    """Its rows keep their empty loss; the steps after the checkpoint get theirs, the same as a whole run's."""
    whole = uninterrupted("step")
    cut = train(case_spec("step"), tmp_path / "cut", SignalAfterEpoch(1))
    lines = (cut.path / "lr.csv").read_text().splitlines()
    (cut.path / "lr.csv").write_text("".join(",".join(line.split(",")[:2]) + "\n" for line in lines))
    done = resume(cut.path)
    assert done.summary["status"] == "completed" and without_seconds(done.path) == without_seconds(whole.path)
    rows, expected = read_csv(done.path / "lr.csv"), read_csv(whole.path / "lr.csv")
    assert [(r["step"], r["lr"]) for r in rows] == [(r["step"], r["lr"]) for r in expected]
    assert [r["loss"] for r in rows] == [""] * 40 + [r["loss"] for r in expected[40:]]
