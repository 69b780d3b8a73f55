"""Nothing a user can type or a machine can do loses data, runs foreign code or tracebacks: output
paths, resumes of changed or damaged runs, concurrent processes, thread counts, crafted checkpoints,
full disks, signals at the edges of a run, and exit codes that agree."""

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, read_csv, run_dirs
from lrdecay_cli.config.spec_file import from_data, merge_sections
from lrdecay_cli.training.loop import train
from test_resume import SignalAfterEpoch, without_seconds

REPO = Path(__file__).resolve().parent.parent


def one_line(result, code: int, expected: str) -> str:
    """The command failed with `code` and exactly one error line that contains `expected`."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.stderr
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def interrupted(tmp_path):
    """interrupted(changes) -> a run of TINY (3 epochs) stopped by Ctrl-C after epoch 2, and the spec."""

    def make(changes=None):
        spec = from_data(merge_sections(TINY, {"train": {"epochs": 3}, **(changes or {})}), "test")
        cut = train(spec, tmp_path / "cut", SignalAfterEpoch(2))
        assert cut.summary["status"] == "interrupted"
        return cut.path, spec

    return make


# --- output paths: only regular files or new paths are written ----------------------------------

@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_output_paths_that_are_not_regular_files_are_refused(cli, write_spec, tmp_path, kind):
    target = tmp_path / "out.png"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(victim)
    else:
        target.mkdir()
    spec = write_spec()
    one_line(cli("schedule", spec, "--steps", "5", "--png", target), 2, f"--png {target}")
    one_line(cli("find-lr", spec, "--write", target, "--force", "--runs-dir", tmp_path / "runs"), 2,
             f"--write {target}")
    assert not (tmp_path / "runs").exists() and victim.read_text() == "keep me"
    assert {"fifo": target.is_fifo, "symlink": target.is_symlink, "directory": target.is_dir}[kind]()


def test_a_device_node_is_never_replaced(cli, write_spec):
    """As root, replacing /dev/null by a rename would destroy the device for the whole machine."""
    one_line(cli("schedule", write_spec(), "--steps", "5", "--png", "/dev/null"), 2, "not a regular file")
    assert Path("/dev/null").is_char_device()


def test_plot_refuses_a_fifo_where_a_figure_goes(cli, finished_sweep, tmp_path):
    out = tmp_path / "figures"
    out.mkdir()
    os.mkfifo(out / "loss.png")
    one_line(cli("plot", finished_sweep, "--out", out), 2, "loss.png")
    assert sorted(p.name for p in out.iterdir()) == ["loss.png"] and (out / "loss.png").is_fifo()


def test_plot_into_an_unwritable_directory_is_one_line(cli, finished_sweep, tmp_path, monkeypatch):
    """As root nothing is unwritable: the permission check is simulated."""
    from lrdecay_cli.output import plot

    real = os.access
    monkeypatch.setattr(plot.os, "access", lambda path, mode: False if mode & os.W_OK else real(path, mode))
    one_line(cli("plot", finished_sweep, "--out", tmp_path / "figures"), 2, "is not writable")


def test_a_figure_format_is_checked_before_anything_is_computed(cli, write_spec, tmp_path):
    one_line(cli("schedule", write_spec(), "--png", tmp_path / "lr.xyz"), 2, "'.xyz' is not a figure format")
    assert list(tmp_path.glob("lr.*")) == []


# --- resume: a changed spec must fit the checkpoint; damaged files are refused --------------------

@pytest.mark.parametrize("change,expected", [
    ("model.hidden=[32]", "another model"),
    ("optimizer.name=adam", "holds sgd state, not adam"),
])
def test_resume_with_force_cannot_change_what_the_checkpoint_holds(cli, interrupted, change, expected):
    run, _ = interrupted()
    config = (run / "config.yaml").read_bytes()
    one_line(cli("train", "--resume", run, "--set", change, "--force"), 2, expected)
    assert (run / "config.yaml").read_bytes() == config  # nothing written before the check
    assert cli("train", "--resume", run, "--quiet").exit_code == 0  # the run is still resumable as it was


DAMAGE = {
    "metrics header only": ("metrics.csv", lambda p: p.write_text(p.read_text().splitlines()[0] + "\n"),
                            "metrics.csv: 0 rows where the checkpoint needs 2"),
    "metrics deleted": ("metrics.csv", Path.unlink, "metrics.csv: 0 rows"),
    "metrics row torn": ("metrics.csv", lambda p: p.write_text(p.read_text().rstrip("\n").rsplit(",", 3)[0] + "\n"),
                         "metrics.csv:3"),
    "metrics row not a number": ("metrics.csv", lambda p: p.write_text(p.read_text().replace(",", ",x", 1)),
                                 "metrics.csv:"),
    "lr deleted": ("lr.csv", Path.unlink, "lr.csv: 0 rows where the checkpoint needs 80"),
    "lr cut short": ("lr.csv", lambda p: p.write_text("\n".join(p.read_text().splitlines()[:40]) + "\n"),
                     "lr.csv: 39 rows where the checkpoint needs 80"),
    "lr row missing": ("lr.csv", lambda p: p.write_text("\n".join(l for i, l in enumerate(p.read_text().splitlines())
                                                                  if i != 30) + "\n"), "lr.csv:31: step 30 where 29"),
}


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_resume_refuses_a_run_whose_rows_have_holes(cli, interrupted, case):
    name, damage, expected = DAMAGE[case]
    run, _ = interrupted()
    damage(run / name)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    line = one_line(cli("train", "--resume", run), 2, name)
    assert expected.split(": ", 1)[-1].split(" where")[0] in line or expected in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing made permanent


def test_plot_and_compare_refuse_a_run_with_holes(cli, tmp_path):
    run = train(from_data(TINY, "test"), tmp_path / "runs").path
    lines = (run / "lr.csv").read_text().splitlines()
    (run / "lr.csv").write_text("\n".join(lines[:20] + lines[21:]) + "\n")
    one_line(cli("plot", run, "--out", tmp_path / "p"), 2, f"{run / 'lr.csv'}:21: step 20 where 19")
    (run / "lr.csv").write_text("\n".join(lines) + "\n")
    metrics = (run / "metrics.csv").read_text().splitlines()
    (run / "metrics.csv").write_text("\n".join([metrics[0], metrics[2]]) + "\n")  # epoch 1 gone
    one_line(cli("compare", run), 2, f"{run / 'metrics.csv'}:2: epoch 2 where 1")


def test_a_broken_summary_is_refused_on_resume(cli, interrupted):
    run, _ = interrupted()
    (run / "summary.json").write_text("{not json")
    one_line(cli("train", "--resume", run), 2, "summary.json is missing or not valid JSON")


# --- checkpoints are data, never code ------------------------------------------------------------

class RunsACommand:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp/lrdecay-test-crafted-pickle-ran")


@pytest.mark.parametrize("kind", ["crafted pickle", "truncated", "random bytes", "empty", "a tensor", "a zip"])
def test_a_checkpoint_that_is_not_ours_is_refused_and_runs_nothing(cli, interrupted, kind):
    run, _ = interrupted()
    path = run / "checkpoint.pt"
    MARKER.unlink(missing_ok=True)
    if kind == "crafted pickle":
        state = torch.load(path, weights_only=True)
        state["rng"]["payload"] = RunsACommand()
        torch.save(state, path)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "a tensor":
        torch.save(torch.zeros(3), path)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.pkl", pickle.dumps({"epoch": 1}))
    one_line(cli("train", "--resume", run), 2, "checkpoint.pt: not")
    assert not MARKER.exists()


# --- one process at a time in a run or sweep directory -------------------------------------------

def test_a_run_or_sweep_in_use_is_refused_naming_the_process(cli, interrupted, tmp_path):
    from lrdecay_cli.rundir.fs import locked

    run, _ = interrupted()
    with locked(run):
        one_line(cli("train", "--resume", run), 2, f"{run}: in use by PID {os.getpid()}")
    assert cli("train", "--resume", run, "--quiet").exit_code == 0
    assert not (run / ".lock").exists()  # a clean end takes the lock file along

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": TINY, "seeds": 2}))
    assert cli("sweep", path, "--runs-dir", tmp_path / "runs", "--quiet", "--dry-run").exit_code == 0
    sweep_dir = tmp_path / "runs" / "sweeps" / "made"
    sweep_dir.mkdir(parents=True)
    from lrdecay_cli.config import sweep_file
    from lrdecay_cli.experiments import sweep as sweeps

    plan = sweeps.plan(path)
    (sweep_dir / "sweep.yaml").write_text(sweep_file.resolved_yaml(plan.sweep, plan.base))
    with locked(sweep_dir):
        one_line(cli("sweep", "--resume", sweep_dir, "--quiet"), 2, f"in use by PID {os.getpid()}")
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["sweep.yaml"]  # nothing trained, nothing cleared


def test_two_sweep_resumes_at_once_train_each_trial_once(tmp_path):
    path = tmp_path / "sweep.yaml"
    base = merge_sections(TINY, {"data": {"limit": 6000, "val_size": 500}, "train": {"epochs": 3}})
    path.write_text(yaml.safe_dump({"name": "s", "base": base, "seeds": 3}))
    from lrdecay_cli.config import sweep_file
    from lrdecay_cli.experiments import sweep as sweeps

    plan = sweeps.plan(path)
    sweeps.create(plan, tmp_path / "runs")
    command = [sys.executable, "-m", "lrdecay_cli", "sweep", "--resume", str(plan.path), "--quiet"]
    first = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (first, second)]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by PID" in refused and refused.count("\n") == 1
    assert sorted(p.name for p in plan.path.iterdir() if p.is_dir()) == ["t000", "t001", "t002"]
    assert [r["status"] for r in read_csv(plan.path / "results.csv")] == ["completed"] * 3


# --- a CPU run's numbers depend on its thread count: recorded, and kept on resume ------------------

def test_resume_under_another_thread_count_needs_force(cli, interrupted, tmp_path):
    run, spec = interrupted()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["threads"] == torch.get_num_threads()
    summary["threads"] = torch.get_num_threads() + 3
    (run / "summary.json").write_text(json.dumps(summary))
    one_line(cli("train", "--resume", run), 2, f"trained with {torch.get_num_threads() + 3} CPU threads")
    assert cli("train", "--resume", run, "--force", "--quiet").exit_code == 0


# --- the machine fails, not the input: one line, exit 1, the run marked -------------------------

def test_a_full_disk_mid_run_is_one_line_and_the_run_says_failed(cli, write_spec, tmp_path, monkeypatch):
    from lrdecay_cli.rundir import record as rundir

    real = rundir.write_atomic
    writes = {"metrics": 0}

    def full_at_the_second_epoch(path, content):
        if path.name == "metrics.csv":
            writes["metrics"] += 1
            if writes["metrics"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, content)

    monkeypatch.setattr(rundir, "write_atomic", full_at_the_second_epoch)
    result = cli("train", write_spec(), "--runs-dir", tmp_path / "runs", "--quiet")
    line = one_line(result, 1, "No space left on device")
    (run,) = run_dirs(tmp_path / "runs")
    assert str(run / "metrics.csv") in line
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left" in summary["message"]
    assert summary["epochs_completed"] == 1


def test_a_runs_dir_that_is_a_dangling_or_looping_symlink_is_one_line(cli, write_spec, tmp_path):
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    one_line(cli("train", write_spec(), "--runs-dir", tmp_path / "dangling"), 2, "a symlink that leads nowhere")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    one_line(cli("train", write_spec(), "--runs-dir", tmp_path / "loop" / "runs"), 2, "a symlink that leads nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_an_error_after_the_progress_bar_exists_is_still_one_line(cli, write_spec, tmp_path):
    """Not --quiet: the progress display is made, and must not print a blank line before the error."""
    result = cli("train", write_spec({"data": {"limit": 70000, "val_size": 100}}), "--runs-dir", tmp_path / "runs")
    assert result.stderr.startswith("error: data.limit: 70000 is out of range"), repr(result.stderr[:80])
    one_line(result, 2, "data.limit")


def test_output_that_cannot_be_written_fails_the_command(write_spec):
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "lrdecay_cli", "schedule", str(write_spec()), "--steps", "3"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 1 and "No space left on device" in done.stderr and "Traceback" not in done.stderr


# --- signals at the edges of a run --------------------------------------------------------------

def test_a_signal_during_the_test_evaluation_interrupts_the_run(cli, tmp_path, monkeypatch):
    from lrdecay_cli.training.trainer import SingleTrainer as Trainer

    spec = from_data(TINY, "test")
    whole = train(spec, tmp_path / "whole")
    real = Trainer.evaluate

    def signalled_while_testing(self, x, y):
        if x is self.data.test_x:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, x, y)

    monkeypatch.setattr(Trainer, "evaluate", signalled_while_testing)
    cut = train(spec, tmp_path / "cut")
    monkeypatch.undo()
    assert cut.summary["status"] == "interrupted" and cut.summary["test_acc"] is None
    assert cut.summary["epochs_completed"] == 2
    done = cli("train", "--resume", cut.path, "--quiet")
    assert done.exit_code == 0, done.output
    final = json.loads((cut.path / "summary.json").read_text())
    assert final["status"] == "completed" and final["test_acc"] == whole.summary["test_acc"]
    assert without_seconds(cut.path) == without_seconds(whole.path)


SIGNAL_AT_START = """
import os, signal, sys
from pathlib import Path
from lrdecay_cli.config.spec_file import from_data
from lrdecay_cli.training.loop import TrainObserver, train

class SignalAtStart(TrainObserver):
    def on_start(self, run_dir, summary):
        os.kill(os.getpid(), signal.SIGTERM)

result = train(from_data({tiny!r}, "test"), Path({runs!r}), SignalAtStart())
sys.exit(0 if result.summary["status"] == "interrupted" else 3)
"""


def test_sigterm_just_after_a_run_starts_leaves_it_interrupted_not_running(tmp_path):
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", SIGNAL_AT_START.format(tiny=TINY, runs=str(runs))], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = run_dirs(runs)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"


def test_resuming_a_diverged_run_exits_1_like_train(cli, write_spec, tmp_path):
    spec = write_spec({"optimizer": {"name": "sgd", "lr": 1.0e6}, "schedule": {"name": "constant"}})
    assert cli("train", spec, "--runs-dir", tmp_path / "runs", "--quiet").exit_code == 1
    (run,) = run_dirs(tmp_path / "runs")
    again = cli("train", "--resume", run, "--quiet")
    assert again.exit_code == 1 and "run diverged" in again.stderr


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EDQUOT])
def test_resume_on_a_disk_that_takes_no_writes_is_one_line(cli, interrupted, monkeypatch, code):
    """A read-only mount, a full disk, a quota: the resume stops at its first write with one line naming
    the file (exit 1: the machine, not the input), and the run stays resumable as it was."""
    from lrdecay_cli.rundir import record as rundir

    run, _ = interrupted()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def refuse(path, content):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(rundir, "write_atomic", refuse)
    one_line(cli("train", "--resume", run, "--quiet"), 1, os.strerror(code))
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert cli("train", "--resume", run, "--quiet").exit_code == 0
