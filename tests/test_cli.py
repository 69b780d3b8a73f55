"""The command line: every bad input is one line on stderr, exit code 2, and nothing written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_dirs

REPO = Path(__file__).resolve().parent.parent

BAD_SPECS = [
    ("YAML syntax error", "optimizer: {lr: 0.1\n", "YAML syntax error at line 2, column 1"),
    ("unknown key", "train: {epoch: 3}\n", "train.epoch: unknown key 'epoch'; did you mean 'epochs'?"),
    ("unknown model", "model: {name: resnet}\n", "model.name: unknown model 'resnet'; valid names: mlp, cnn"),
    ("unknown optimizer", "optimizer: {name: lamb}\n", "valid names: sgd, adam, adamw, rmsprop, adadelta"),
    ("unknown schedule", "schedule: {name: cosine_decay_x}\n", "schedule.name: unknown schedule method"),
    ("unknown dataset", "data: {dataset: fashion}\n", "data.dataset: must be 'mnist'"),
    ("lr zero", "optimizer: {lr: 0}\n", "optimizer.lr: must be greater than 0"),
    ("lr negative", "optimizer: {name: adam, lr: -1e-3}\n", "optimizer.lr: must be greater than 0"),
    ("lr not a number", "optimizer: {lr: fast}\n", "optimizer.lr: must be a valid number"),
    ("lr nan", "optimizer: {lr: .nan}\n", "optimizer.lr: must be a finite number"),
    ("epochs zero", "train: {epochs: 0}\n", "train.epochs: must be greater than or equal to 1"),
    ("batch_size zero", "train: {batch_size: 0}\n", "train.batch_size: must be greater than or equal to 1"),
    ("decay_rate zero", "schedule: {name: exponential, decay_rate: 0}\n", "schedule.decay_rate: must be greater than 0"),
    ("decay_steps zero", "schedule: {name: inverse_time, decay_steps: 0}\n", "schedule.decay_steps: must be greater"),
    ("empty file", "", "the spec is empty"),
    ("a list", "- name: x\n", "must be a mapping"),
]


def assert_clean_failure(result, expected: str, runs: Path):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert result.stdout == ""
    assert not runs.exists() or run_dirs(runs) == []


@pytest.mark.parametrize("label,text,expected", BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
def test_bad_spec(cli, tmp_path, label, text, expected):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    assert_clean_failure(cli("train", spec, "--runs-dir", tmp_path / "runs"), expected, tmp_path / "runs")


def test_missing_spec_file(cli, tmp_path):
    result = cli("train", tmp_path / "nope.yaml", "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "nope.yaml: no such file", tmp_path / "runs")


@pytest.mark.parametrize("override,expected", [
    ("train.epoch=2", "no field 'train.epoch'; did you mean 'epochs'?"),
    ("optimizer.lr", "cannot parse --set 'optimizer.lr'"),
    ("optimizer.lr={", "cannot parse the value of --set"),
    ("train.epochs=many", "train.epochs (from --set): must be a valid integer"),
])
def test_bad_set(cli, write_spec, tmp_path, override, expected):
    result = cli("train", write_spec(), "--runs-dir", tmp_path / "runs", "--set", override)
    assert_clean_failure(result, expected, tmp_path / "runs")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(cli, write_spec, tmp_path):
    result = cli("train", write_spec({"train": {"device": "cuda"}}), "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "train.device: CUDA is not available on this machine", tmp_path / "runs")


def test_runs_dir_that_is_a_file(cli, write_spec, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    for runs in (blocker, blocker / "sub"):
        result = cli("train", write_spec(), "--runs-dir", runs)
        assert_clean_failure(result, "is a file, not a directory", tmp_path / "none")
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_runs_dir_without_write_permission(cli, write_spec, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = cli("train", write_spec(), "--runs-dir", locked / "runs")
    assert_clean_failure(result, "is not writable", locked / "runs")


def test_unwritable_runs_dir_is_refused_before_anything_is_written(monkeypatch, cli, write_spec, tmp_path):
    """As root nothing is unwritable, so simulate the permission check failing; nothing may be created."""
    from lrdecay_cli import rundir

    spec = write_spec()
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: not mode & os.W_OK and real_access(path, mode))
    result = cli("train", spec, "--runs-dir", tmp_path / "runs")
    assert_clean_failure(result, "is not writable; pass --runs-dir", tmp_path / "runs")


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
