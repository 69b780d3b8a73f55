"""The Python API (lrdecay_cli.api): what the commands do, callable from a notebook, returning data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import TINY, read_csv
from lrdecay_cli.errors import UserError
from lrdecay_cli.config.spec_file import merge_sections


def test_train_sweep_read_and_compare_from_python(write_spec, tmp_path):
    import lrdecay_cli.api as lr

    path = write_spec(merge_sections(TINY, {"train": {"epochs": 1}}))
    spec = lr.load_spec(path, overrides=["optimizer.lr=0.05"])
    assert spec.optimizer.lr == 0.05
    run = lr.train(spec, runs_dir=tmp_path / "runs")
    assert run.summary["status"] == "completed" and (run.path / "metrics.csv").is_file()
    swept = lr.sweep(path, grid=["optimizer.lr=0.05,0.1"], runs_dir=tmp_path / "runs", executor="vectorized")
    assert swept.interrupted is None and [row["status"] for row in swept.rows] == ["completed"] * 2
    assert len(read_csv(swept.path / "results.csv")) == 2
    runs = lr.read_runs([swept.path])
    assert [r.config["optimizer.lr"] for r in runs] == [0.05, 0.1] and len(runs[0].metrics) == 1
    board = lr.compare([swept.path], metric="val_acc")
    assert board is not None and len(board.groups) == 2
    assert set(lr.figures(runs).figures) == {"lr", "loss", "accuracy", "overview"}


def test_bad_input_raises_the_clis_one_line_error(tmp_path):
    import lrdecay_cli.api as lr

    with pytest.raises(UserError, match="no such file"):
        lr.load_spec(tmp_path / "missing.yaml")


def test_importing_the_package_and_the_api_loads_no_torch():
    code = "import lrdecay_cli, lrdecay_cli.api, sys; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
