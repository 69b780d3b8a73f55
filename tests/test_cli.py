"""The command line: start-up, permissions, the console script (the bad-input catalogue is test_bad_input.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_dirs

REPO = Path(__file__).resolve().parent.parent


def assert_clean_failure(result, expected: str, runs: Path):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert result.stdout == ""
    assert not runs.exists() or run_dirs(runs) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(cli, write_spec, tmp_path):
    result = cli("train", write_spec({"train": {"device": "cuda"}}), "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "train.device: CUDA is not available on this machine", tmp_path / "runs")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_runs_dir_without_write_permission(cli, write_spec, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("train", write_spec(), "--runs-dir", locked / "runs")
    assert_clean_failure(result, "is not writable", locked / "runs")


def test_unwritable_runs_dir_is_refused_before_anything_is_written(monkeypatch, cli, write_spec, tmp_path):
    """As root nothing is unwritable, so simulate the permission check failing; nothing may be created."""
    from lrdecay_cli.rundir import fs as rundir

    spec = write_spec()
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: not mode & os.W_OK and real_access(path, mode))
    result = cli("train", spec, "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "is not writable; pass --runs-dir", tmp_path / "runs")


@pytest.mark.parametrize("command", ["train", "sweep", "find-lr"])
def test_a_full_disk_is_refused_before_anything_is_written(monkeypatch, cli, write_spec, tmp_path, command):
    """The runs directory's disk must hold the run (checkpoint twice, CSVs): checked before data is loaded."""
    import collections

    from lrdecay_cli.rundir import fs as rundir

    spec = write_spec()
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 200_000, 200_000))
    result = cli(command, spec, "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "only 0.2 MB free on its disk, about", tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from lrdecay_cli.cli import app; app(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "train" in done.stdout and done.stdout.strip().endswith("False")


def test_console_script_reports_user_errors_with_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lrdecay_cli", "train", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.yaml'}: no such file; check the path"]


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    """`lrdecay schedules | head -3`: the reader goes away early; no traceback, no error line."""
    for command in ("schedules", "schedules exponential"):
        out = subprocess.run(f"{sys.executable} -m lrdecay_cli {command} | head -3", shell=True, capture_output=True,
                             text=True, timeout=60, cwd=REPO)
        assert len(out.stdout.splitlines()) == 3 and out.stderr == "", out.stderr


def test_a_bug_is_its_own_traceback_not_a_chained_one(cli, monkeypatch):
    """An unexpected exception (a bug) surfaces as itself: cli.py names only typer's public exceptions,
    so handling it can never raise another (typer._click had no Abort, and every bug became an
    AttributeError chained to it)."""
    from lrdecay_cli import schedules

    class Bug(RuntimeError):
        pass

    def broken(*args, **kwargs):
        raise Bug("a bug")

    monkeypatch.setattr(schedules, "METHODS", type("Broken", (), {"__contains__": broken, "__iter__": broken})())
    result = cli("schedules", "exponential")
    assert isinstance(result.exception, Bug) and result.exception.__context__ is None


def test_every_file_a_hint_names_exists():
    """Error messages point users at example files: each one named must be in the repository."""
    import re

    named = set()
    for source in (REPO / "lrdecay_cli").rglob("*.py"):
        named |= set(re.findall(r"configs/[\w./-]+\.yaml", source.read_text()))
    assert named and all((REPO / name).is_file() for name in named), sorted(n for n in named if not (REPO / n).is_file())


def test_version_short_help_and_shell_completion(cli):
    import lrdecay_cli

    version = cli("--version")
    assert version.exit_code == 0 and version.stdout == f"lrdecay {lrdecay_cli.__version__}\n"
    for args in (["-h"], ["train", "-h"], ["sweep", "-h"]):
        shown = cli(*args)
        assert shown.exit_code == 0 and shown.stdout.startswith("Usage: lrdecay"), args
    script = subprocess.run([sys.executable, "-m", "lrdecay_cli", "--show-completion", "bash"], capture_output=True,
                            text=True, timeout=60, cwd=REPO)
    assert script.returncode == 0 and "complete" in script.stdout, script.stderr


def test_training_progress_says_what_loads_and_shows_the_runs_eta():
    """In a terminal: a status line at once (torch and the data take seconds), then a run bar with the
    time remaining besides each epoch's."""
    import io

    from rich.console import Console

    from lrdecay_cli.output.console import TrainProgress

    out = io.StringIO()
    progress = TrainProgress(Console(file=out, force_terminal=True, width=160))
    assert progress.loading is not None  # started before anything is loaded
    progress.on_start(Path("runs/x"), {"device_name": "cpu", "train_size": 100, "val_size": 10,
                                       "steps_per_epoch": 10, "epochs": 3, "steps": 0,
                                       "epochs_completed": 0})
    assert progress.loading is None
    progress.on_epoch_start(1, 3, 10)
    progress.on_progress(5, 0.5, 0.1)
    run = progress.progress.tasks[progress.run]
    assert (run.completed, run.total) == (5, 30)
    progress.stop()
    text = out.getvalue()
    assert "loading torch, MNIST and the model" in text and "eta" in text and "run" in text


def test_help_summaries_are_whole_and_every_command_shows_examples(cli):
    """The command list shows each summary whole (click cuts a long one with '...'), and every
    command's help has an example to copy."""
    top = cli("--help")
    commands = [line.split()[0] for line in top.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert "study" in commands and "train" in commands
    assert "..." not in top.stdout.split("Commands:")[1]
    for name in commands:
        text = cli(name, "--help").stdout
        assert "Example" in text and f"lrdecay {name} " in text.split("Example")[1], name
        for placeholder in ("<path>", "<list[", "<str>", "<int>", "{"):  # typer's own, which say nothing
            assert placeholder not in text, (name, placeholder)
    assert "configs/sweeps/" in cli("sweep", "--help").stdout


def test_sweep_progress_counts_the_stack_in_training_by_how_far_it_is():
    """A stack's trials finish together; the bar (and so its ETA) moves while the stack trains."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from lrdecay_cli.analysis.compare import METRICS
    from lrdecay_cli.output.console import SweepProgress

    progress = SweepProgress(6, METRICS["val_acc"], Console(file=io.StringIO(), force_terminal=False, width=80))
    trials = [SimpleNamespace(dirname=f"t00{i}", fields={"seed": i}) for i in range(6)]
    completed = lambda: progress.progress.tasks[0].completed  # noqa: E731
    for trial in trials[:4]:  # a stack of four of the six
        progress.on_start(trial)
    assert completed() == 0
    progress.observer.on_epoch_start(1, 2, 10)
    progress.observer.on_progress(5, 0.3, 0.1)
    assert completed() == pytest.approx(4 * 0.25) and progress.progress.tasks[0].fields["finished"] == 0
    progress.observer.on_epoch_start(2, 2, 10)
    progress.observer.on_progress(10, 0.2, 0.1)
    assert completed() == pytest.approx(4.0)
    for trial in trials[:4]:  # as its trials finish one by one, the count stays where it is
        progress.on_done(trial, {"status": "completed", "best_val_acc": 0.9})
        assert completed() == pytest.approx(4.0)
    assert progress.progress.tasks[0].fields["finished"] == 4  # what the bar's count shows: trials finished
    progress.on_start(trials[4])  # a trial trained elsewhere (processes, ray): no epochs seen here
    assert completed() == pytest.approx(4.0)
    progress.stop()


def test_sweep_progress_in_a_log_is_one_plain_line_per_trial_with_the_eta():
    """Where stderr is a file, no bar (a log would keep only the last one): a line per finished trial,
    with its metric, the best so far (the word said once) and the time left."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from lrdecay_cli.analysis.compare import METRICS
    from lrdecay_cli.output.console import SweepProgress

    out = io.StringIO()
    progress = SweepProgress(3, METRICS["val_acc"], Console(file=out, force_terminal=False, width=80))
    trials = [SimpleNamespace(dirname=f"t00{i}", fields={"optimizer.lr": 0.1 * (i + 1), "seed": 0}) for i in range(3)]
    for trial in trials[:2]:
        progress.on_start(trial)
    assert progress.progress.tasks[0].fields["status"].startswith("running t000, t001")
    progress.observer.on_epoch_start(2, 5, 10)  # the loop's observer of the stack in training
    assert progress.progress.tasks[0].fields["status"].startswith("running t000, t001 at epoch 2/5")
    progress.on_done(trials[0], {"status": "completed", "best_val_acc": 0.91})
    progress.on_done(trials[1], {"status": "diverged", "best_val_acc": 0.95})
    progress.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("trials 1/3: t000 completed, best val_acc 0.9100 (optimizer.lr=0.1")
    assert lines[1].startswith("trials 2/3: t001 diverged") and "leader t001 0.9500; eta" in lines[1]
    assert all(line.count("best") == 1 for line in lines) and "\x1b" not in out.getvalue()
