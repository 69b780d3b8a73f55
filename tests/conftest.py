"""Shared fixtures: real MNIST (verified once per session) and tiny specs that train in seconds."""

from __future__ import annotations

import os

# Before torch loads (here, in the tests' CLI processes, their pool workers and Ray's): OpenMP threads
# that wait for work sleep instead of spinning. On a machine busy with other work a spinning thread
# holds a core its sibling needs, and a tiny run took 2-20 s instead of 0.5 s; the numbers are the same.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import csv
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lrdecay_cli.cli import app
from lrdecay_cli.config.spec_file import merge_sections

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"limit": 3000, "val_size": 500},
    "model": {"name": "mlp", "hidden": [64]},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "schedule": {"name": "exponential", "decay_steps": 20, "decay_rate": 0.8},
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 500, "device": "cpu"},
}
"""2,500 training images, 40 steps per epoch: a real run in about a second."""


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run where CUDA is (bench/device_check.sh) and are skipped elsewhere."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run bench/device_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def mnist():
    """Make sure the user's MNIST cache is there and verified before any training test."""
    from lrdecay_cli.training.data import default_data_root, ensure_mnist

    return ensure_mnist(default_data_root())


@pytest.fixture
def write_spec(tmp_path):
    """write_spec(changes) -> path of TINY with `changes` merged in."""

    def write(changes: dict | None = None, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(merge_sections(TINY, changes or {})))
        return path

    return write


@pytest.fixture
def cli(tmp_path):
    """cli(*args) runs `lrdecay` in-process; stdout and stderr are kept apart."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], prog_name="lrdecay")

    return invoke


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def step_lrs(path: Path) -> str:
    """lr.csv's `step,lr` columns as text, without each step's loss: what `lrdecay schedule` previews."""
    return "".join(",".join(line.split(",")[:2]) + "\n" for line in path.read_text().splitlines())


def assert_same_lrs_close_losses(a: Path, b: Path, rel: float) -> None:
    """Two runs' lr.csv: the same steps and LRs to the bit, each step's loss within `rel` (where the runs sum
    in another order: a stack's batched matmuls, another thread count), non-finite where the other's is."""
    import math

    import pytest

    assert step_lrs(a) == step_lrs(b)
    losses_a, losses_b = ([float(r["loss"]) for r in read_csv(path)] for path in (a, b))
    assert [math.isfinite(x) for x in losses_a] == [math.isfinite(x) for x in losses_b]
    finite = [(x, y) for x, y in zip(losses_a, losses_b) if math.isfinite(x)]
    assert [y for _, y in finite] == pytest.approx([x for x, _ in finite], rel=rel)


SHOW_SWEEP = {
    "name": "show",
    "base": {**TINY, "data": {"limit": 2000, "val_size": 400}, "model": {"name": "mlp", "hidden": [32]},
             "train": {**TINY["train"], "epochs": 3}},
    "variants": [{"schedule": {"name": "constant"}},
                 {"schedule": {"name": "step", "step_size": 1, "gamma": 0.3, "interval": "epoch"}},
                 {"schedule": {"name": "cosine"}}],
    "seeds": 2,
}
"""3 methods x 2 seeds, 3 epochs of 25 steps: finished run directories for plot and compare tests."""


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> Path:
    """A real sweep directory of SHOW_SWEEP, trained once per session; tests must not change it."""
    root = tmp_path_factory.mktemp("finished")
    path = root / "show.yaml"
    path.write_text(yaml.safe_dump(SHOW_SWEEP))
    result = CliRunner().invoke(app, ["sweep", str(path), "--runs-dir", str(root / "runs"), "--quiet",
                                      "--executor", "sequential"])
    assert result.exit_code == 0, result.output
    (sweep_dir,) = (root / "runs" / "sweeps").iterdir()
    return sweep_dir
