"""`train.tensorboard: true`: event files that TensorBoard's own reader reads back equal to lr.csv and
metrics.csv, through resume, divergence and the vectorized executor; nothing imported otherwise."""

import json
import math
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import TINY, read_csv, run_dirs
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.training.stacked import stack_key
from lrdecay_cli.config.spec_file import from_data, merge_sections
from lrdecay_cli.training.loop import resume, train
from test_resume import SignalAfterEpoch

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

WITH_EVENTS = {"train": {"tensorboard": True}}
EPOCH_TAGS = {"train/loss_epoch": "train_loss", "train/acc": "train_acc", "val/loss": "val_loss", "val/acc": "val_acc"}


def read_events(run) -> EventAccumulator:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def assert_events_equal_the_csvs(run) -> EventAccumulator:
    """Every scalar against the run's CSVs and summary (TensorBoard keeps float32: 1e-6 relative)."""
    events = read_events(run)
    summary = json.loads((run / "summary.json").read_text())
    config = (run / "config.yaml").read_text()
    lr_rows, metrics = read_csv(run / "lr.csv"), read_csv(run / "metrics.csv")

    lr = events.Scalars("lr")
    assert [e.step for e in lr] == [int(r["step"]) for r in lr_rows]
    assert [e.value for e in lr] == pytest.approx([float(r["lr"]) for r in lr_rows], rel=1e-6)

    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [e.step for e in lr]  # lr.csv's loss column, the one source of both
    assert [e.value for e in losses] == pytest.approx([float(r["loss"]) for r in lr_rows], rel=1e-6, nan_ok=True)
    per_epoch, n = summary["steps_per_epoch"], summary["train_size"]
    batch = yaml.safe_load(config)["train"]["batch_size"]
    weights = [batch] * (per_epoch - 1) + [n - batch * (per_epoch - 1)]
    ends = [row for row, after in zip(metrics, metrics[1:] + [None]) if after is None or after["epoch"] != row["epoch"]]
    for row in ends:  # the per-step losses average to the epoch's train_loss as the loop weighs them
        end = int(row["step"])
        epoch_losses = [e.value for e in losses if end - per_epoch <= e.step < end]
        assert sum(w * loss for w, loss in zip(weights, epoch_losses)) / n == pytest.approx(
            float(row["train_loss"]), rel=1e-6)

    for tag, column in EPOCH_TAGS.items():  # at the row's last step: metrics.csv's step - 1 (val at every evaluation)
        rows = metrics if tag.startswith("val/") else ends
        got = events.Scalars(tag) if tag in events.Tags()["scalars"] else []  # none where it diverged in epoch 1
        assert [e.step for e in got] == [int(r["step"]) - 1 for r in rows]
        assert [e.value for e in got] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)

    if summary["test_acc"] is None:
        assert "test/acc" not in events.Tags()["scalars"]
    else:
        (test_acc,) = events.Scalars("test/acc")
        assert test_acc.step == summary["steps"] - 1 and test_acc.value == pytest.approx(summary["test_acc"], rel=1e-6)
        assert events.Scalars("test/loss")[0].value == pytest.approx(summary["test_loss"], rel=1e-6)

    spec_text = events.Tensors("spec/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert spec_text == f"```yaml\n{config}```"
    return events


def test_events_equal_lr_csv_and_metrics_csv(cli, write_spec, tmp_path):
    result = cli("train", write_spec(WITH_EVENTS), "--runs-dir", tmp_path, "--quiet")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path)
    events = assert_events_equal_the_csvs(run)
    assert [e.step for e in events.Scalars("lr")] == list(range(80))
    assert [e.step for e in events.Scalars("val/acc")] == [39, 79]
    assert "tensorboard: true" in events.Tensors("spec/text_summary")[0].tensor_proto.string_val[0].decode()


def test_evaluations_within_epochs_are_val_events_at_their_steps(cli, write_spec, tmp_path):
    spec = write_spec({"train": {"tensorboard": True, "evals_per_epoch": 2}})
    assert cli("train", spec, "--runs-dir", tmp_path, "--quiet").exit_code == 0
    (run,) = run_dirs(tmp_path)
    events = assert_events_equal_the_csvs(run)
    assert [e.step for e in events.Scalars("val/acc")] == [19, 39, 59, 79]
    assert [e.step for e in events.Scalars("train/acc")] == [39, 79]


def test_resume_purges_the_events_written_after_the_checkpoint(tmp_path):
    """As if killed after epoch 2's events were flushed but before its checkpoint: the resumed run
    trains epoch 2 again, and each step's events are read back exactly once."""
    spec = from_data(merge_sections(TINY, {"train": {"epochs": 3, "tensorboard": True}}), "test")
    cut = train(spec, tmp_path / "cut", SignalAfterEpoch(2))
    assert [e.step for e in read_events(cut.path).Scalars("lr")] == list(range(80))
    first = train(spec, tmp_path / "one", SignalAfterEpoch(1))
    shutil.copy(first.path / "checkpoint.pt", cut.path / "checkpoint.pt")

    done = resume(cut.path)
    assert done.summary["status"] == "completed"
    assert len(list((cut.path / "tensorboard").iterdir())) == 2  # the first part's file is kept, purged on reading
    events = assert_events_equal_the_csvs(cut.path)
    assert [e.step for e in events.Scalars("lr")] == list(range(120))
    assert [e.step for e in events.Scalars("train/loss")] == list(range(120))
    assert [e.step for e in events.Scalars("val/loss")] == [39, 79, 119]


def test_a_diverged_run_has_events_up_to_the_divergence(cli, write_spec, tmp_path):
    spec = write_spec({"optimizer": {"name": "sgd", "lr": 1e6, "momentum": 0.9}, "schedule": {"name": "constant"},
                       **WITH_EVENTS})
    assert cli("train", spec, "--runs-dir", tmp_path, "--quiet").exit_code == 1
    (run,) = run_dirs(tmp_path)
    events = assert_events_equal_the_csvs(run)
    at = json.loads((run / "summary.json").read_text())["diverged"]["step"]
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == at + 1 and not math.isfinite(losses[-1]) and all(map(math.isfinite, losses[:-1]))


def test_vectorized_members_write_the_same_events(cli, tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "v", "base": merge_sections(TINY, WITH_EVENTS), "variants": [
        {"schedule": {"name": "cosine"}}, {"optimizer": {"name": "sgd", "lr": 1.0e6}}]}))
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs", "--executor", "vectorized", "--quiet")
    assert out.exit_code == 1 and "1 diverged" in out.stderr, out.output  # the lr 1e6 trial
    (sweep_dir,) = (tmp_path / "runs" / "sweeps").iterdir()
    keys = {stack_key(trial.spec) for trial in sweeps.reopen(sweep_dir).trials}
    assert len(keys) == 1 and None not in keys  # one stack, not two sequential runs
    rows = read_csv(sweep_dir / "results.csv")
    assert [r["status"] for r in rows] == ["completed", "diverged"]
    for row in rows:
        assert_events_equal_the_csvs(sweep_dir / row["trial"])


def test_without_the_package_train_fails_before_the_run_directory(cli, write_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    result = cli("train", write_spec(WITH_EVENTS), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: train.tensorboard: the tensorboard package is not installed; "
        "pip install 'lrdecay_cli[tensorboard]', or set train.tensorboard: false"]
    assert not (tmp_path / "runs").exists()


def test_tensorboard_is_not_imported_by_help_or_by_runs_without_it(write_spec, tmp_path):
    code = f"""
import sys
from typer.testing import CliRunner
from lrdecay_cli.cli import app
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] == "tensorboard" or "utils.tensorboard" in m)
assert CliRunner().invoke(app, ["--help"]).exit_code == 0 and loaded() == [], loaded()
result = CliRunner().invoke(app, ["train", {str(write_spec({"train": {"epochs": 1}}))!r}, "--runs-dir",
                                  {str(tmp_path / "runs")!r}, "--quiet"])
assert result.exit_code == 0, result.output
assert loaded() == [], loaded()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (run,) = run_dirs(tmp_path / "runs")
    assert not (run / "tensorboard").exists()
