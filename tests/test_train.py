"""`lrdecay train` end to end on real MNIST subsets: files, exact LRs, learning, reproducibility."""

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import TINY, read_csv, run_dirs
from lrdecay_cli.config.spec_file import merge_sections


def train_ok(cli, spec_path, runs, *extra):
    result = cli("train", spec_path, "--runs-dir", runs, "--quiet", *extra)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(runs)
    return run


def test_run_directory_is_complete_and_lr_equals_the_formula(cli, write_spec, tmp_path):
    run = train_ok(cli, write_spec(), tmp_path / "runs")
    assert run.name.endswith("-tiny")
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.csv", "lr.csv", "summary.json", "checkpoint.pt"}

    lr_rows = read_csv(run / "lr.csv")
    assert (run / "lr.csv").read_text().splitlines()[0] == "step,lr,loss"
    assert [int(r["step"]) for r in lr_rows] == list(range(80))  # 2 epochs x ceil(2500 / 64) steps
    for row in lr_rows:
        assert float(row["lr"]) == 0.1 * 0.8 ** (int(row["step"]) / 20)

    metrics = read_csv(run / "metrics.csv")
    assert list(metrics[0]) == ["epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    assert [(int(m["epoch"]), int(m["step"])) for m in metrics] == [(1, 40), (2, 80)]
    assert float(metrics[-1]["lr"]) == float(lr_rows[-1]["lr"])
    assert float(metrics[1]["train_loss"]) < float(metrics[0]["train_loss"])
    # each step's loss (its batch's mean), weighted by its batch's images, averages to the epoch's train_loss
    losses = [float(r["loss"]) for r in lr_rows]
    assert losses[0] == pytest.approx(math.log(10), rel=0.05) and losses[-1] < 0.5 * losses[0]
    weights = [64] * 39 + [2500 - 64 * 39]
    for epoch, row in enumerate(metrics):
        epoch_losses = losses[40 * epoch:40 * (epoch + 1)]
        assert sum(w * loss for w, loss in zip(weights, epoch_losses)) / 2500 == pytest.approx(
            float(row["train_loss"]), rel=1e-6)
        assert sum(epoch_losses) / 40 != pytest.approx(float(row["train_loss"]), rel=1e-6)  # the weighting counts

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2 and summary["steps"] == 80
    assert summary["final_val_acc"] == float(metrics[-1]["val_acc"])
    assert summary["best_val_acc"] == max(float(m["val_acc"]) for m in metrics)
    assert summary["test_acc"] > 0.85  # chance is 0.10
    assert (summary["train_size"], summary["val_size"], summary["test_size"]) == (2500, 500, 10000)
    assert summary["torch"] == torch.__version__ and summary["seed"] == 0

    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (2, 80)
    assert set(checkpoint) >= {"model", "optimizer", "schedule", "rng"}


def test_resolved_config_runs_again_identically(cli, write_spec, tmp_path):
    first = train_ok(cli, write_spec(), tmp_path / "a")
    again = train_ok(cli, first / "config.yaml", tmp_path / "b")
    assert (again / "config.yaml").read_text() == (first / "config.yaml").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(read_csv(again / "metrics.csv")) == strip(read_csv(first / "metrics.csv"))
    assert (again / "lr.csv").read_bytes() == (first / "lr.csv").read_bytes()


def test_same_seed_is_bit_identical_and_another_seed_differs(cli, write_spec, tmp_path):
    spec = write_spec({"model": {"name": "mlp", "hidden": [32], "dropout": 0.2}})
    a = train_ok(cli, spec, tmp_path / "a")
    b = train_ok(cli, spec, tmp_path / "b")
    c = train_ok(cli, spec, tmp_path / "c", "--set", "seed=1")
    strip = lambda run: [{k: v for k, v in r.items() if k != "seconds"} for r in read_csv(run / "metrics.csv")]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def test_epoch_interval_changes_lr_only_at_epoch_boundaries(cli, write_spec, tmp_path):
    spec = write_spec({"schedule": {"name": "step", "step_size": 1, "gamma": 0.5, "interval": "epoch"},
                       "train": {"epochs": 3}})
    run = train_ok(cli, spec, tmp_path / "runs")
    lrs = [float(r["lr"]) for r in read_csv(run / "lr.csv")]
    assert lrs == [0.1] * 40 + [0.05] * 40 + [0.025] * 40


@pytest.mark.parametrize("optimizer", [
    {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
    {"name": "adam", "lr": 0.002},
    {"name": "adamw", "lr": 0.002, "weight_decay": 0.05},
    {"name": "rmsprop", "lr": 0.001},
    {"name": "adadelta", "lr": 1.0},
])
def test_every_optimizer_learns_and_uses_the_scheduled_lr(cli, write_spec, tmp_path, optimizer):
    spec = write_spec({"optimizer": optimizer, "schedule": {"name": "inverse_time", "decay_steps": 10,
                                                            "decay_rate": 0.5, "staircase": True}})
    run = train_ok(cli, spec, tmp_path / "runs")
    for row in read_csv(run / "lr.csv"):
        assert float(row["lr"]) == optimizer["lr"] / (1 + 0.5 * math.floor(int(row["step"]) / 10))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] > 0.8, optimizer


def test_cnn_with_dropout_learns(cli, write_spec, tmp_path):
    spec = write_spec({"model": {"name": "cnn"}, "data": {"limit": 1200, "val_size": 200},
                       "optimizer": {"name": "adadelta", "lr": 1.0},
                       "train": {"epochs": 1, "eval_batch_size": 100}})  # the CNN's faster size on a CPU
    run = train_ok(cli, spec, tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_acc"] > 0.7 and summary["steps"] == 16


def test_val_size_0_trains_on_every_image_without_val_metrics(cli, write_spec, tmp_path):
    from lrdecay_cli.rundir.record import RunRecord

    spec = write_spec({"data": {"limit": 1000, "val_size": 0}, "train": {"epochs": 3},
                       "schedule": {"name": "plateau", "monitor": "train_loss", "patience": 0, "factor": 0.5,
                                    "threshold": 0.99}})  # only a 99% drop of the train loss counts as better
    result = cli("train", spec, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["train_size"], summary["val_size"], summary["steps"]) == (1000, 0, 48)  # 16 steps an epoch
    val_fields = ("best_val_acc", "best_epoch", "best_val_loss", "final_val_acc", "final_val_loss")
    assert [summary[k] for k in val_fields] == [None] * 5 and summary["test_acc"] > 0.75
    metrics = read_csv(run / "metrics.csv")
    assert [(m["val_loss"], m["val_acc"]) for m in metrics] == [("", "")] * 3 and float(metrics[2]["train_loss"]) > 0
    lrs = [float(r["lr"]) for r in read_csv(run / "lr.csv")]
    assert lrs == [0.1] * 32 + [0.05] * 16  # plateau saw epoch 2's train loss fall short, and cut
    table = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.stdout.splitlines()
             if line.count("│") == 3}
    assert table["best val accuracy"] == table["final val accuracy"] == "-"
    assert result.stderr.count("val_loss -  val_acc -") == 3  # one progress line per epoch
    reopened = RunRecord.reopen(run, 2, 32)  # what a resume does: the summary rebuilt from metrics.csv
    assert reopened.summary["best_val_acc"] is None and reopened.summary["final_train_loss"] == float(metrics[1]["train_loss"])


def test_bf16_autocast_path_runs_on_cpu(cli, write_spec, tmp_path):
    run = train_ok(cli, write_spec({"train": {"precision": "bf16"}}), tmp_path / "runs")
    assert json.loads((run / "summary.json").read_text())["test_acc"] > 0.8


def test_divergence_stops_with_a_complete_run_directory(cli, write_spec, tmp_path):
    spec = write_spec({"optimizer": {"name": "sgd", "lr": 1e6, "momentum": 0.9},
                       "schedule": {"name": "constant"}})
    result = cli("train", spec, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 1
    assert "diverged" in result.stderr and "loss became" in result.stderr
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["test_acc"] is None
    at = summary["diverged"]
    assert at["epoch"] == 1 and at["lr"] == 1e6
    lr_rows = read_csv(run / "lr.csv")
    assert int(lr_rows[-1]["step"]) == at["step"] == summary["steps"] - 1
    losses = [float(r["loss"]) for r in lr_rows]  # written as they were: finite up to the step that diverged
    assert all(math.isfinite(x) for x in losses[:-1]) and not math.isfinite(losses[-1])
    assert lr_rows[-1]["loss"] == str(at["loss"]) and lr_rows[-1]["loss"] in ("nan", "inf", "-inf")
    assert read_csv(run / "metrics.csv") == []
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 0


def test_json_prints_the_summary(cli, write_spec, tmp_path):
    result = cli("train", write_spec({"train": {"epochs": 1}}), "--runs-dir", tmp_path / "runs", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    (run,) = run_dirs(tmp_path / "runs")
    assert summary == json.loads((run / "summary.json").read_text())


def test_real_subprocess_with_set_overrides(write_spec, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "lrdecay_cli", "train", str(write_spec()), "--runs-dir", str(tmp_path / "runs"),
         "--set", "train.epochs=1", "--set", "name=sub", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["name"] == "sub" and summary["epochs_completed"] == 1
    (run,) = run_dirs(tmp_path / "runs")
    assert run.name.endswith("-sub") and "epochs: 1" in (run / "config.yaml").read_text()


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    from datetime import datetime, timezone

    from lrdecay_cli.rundir.record import RunDir

    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    names = [RunDir.create(tmp_path, "x", now).path.name for _ in range(3)]
    assert names == ["20260102-030405-x", "20260102-030405-x-2", "20260102-030405-x-3"]


def test_compile_path_trains(cli, write_spec, tmp_path):
    run = train_ok(cli, write_spec({"train": {"compile": True, "epochs": 1}}), tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["test_acc"] > 0.8
    for row in read_csv(run / "lr.csv"):
        assert float(row["lr"]) == 0.1 * 0.8 ** (int(row["step"]) / 20)


def test_quickstart_reaches_97_percent(cli, tmp_path):
    """The README's promise: configs/quickstart.yaml, full MNIST, 5 epochs, >= 97% test accuracy."""
    from pathlib import Path

    quickstart = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
    run = train_ok(cli, quickstart, tmp_path / "runs", "--set", "train.device=cpu")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_completed"] == 5 and summary["test_size"] == 10000
    assert summary["test_acc"] >= 0.97


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_training_is_exact_in_lr_and_learns(cli, write_spec, tmp_path, precision):
    run = train_ok(cli, write_spec({"train": {"device": "cuda", "precision": precision}}), tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["device"].startswith("cuda") and summary["test_acc"] > 0.85
    for row in read_csv(run / "lr.csv"):
        assert float(row["lr"]) == 0.1 * 0.8 ** (int(row["step"]) / 20)


@pytest.mark.gpu
def test_auto_picks_cuda(cli, write_spec, tmp_path):
    run = train_ok(cli, write_spec({"train": {"device": "auto", "epochs": 1}}), tmp_path / "runs")
    assert json.loads((run / "summary.json").read_text())["device"].startswith("cuda")


def poison_gradient(parameter, at_call: int, member: int | None = None):
    """Make `parameter`'s gradient NaN in backward pass number `at_call` (1-based), for one member of a
    stacked model or whole; the loss of that step stays finite."""
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        if calls["n"] != at_call:
            return grad
        grad = grad.clone()
        grad[member if member is not None else ...] = float("nan")
        return grad

    parameter.register_hook(hook)


def test_a_non_finite_gradient_with_a_finite_loss_is_divergence(cli, write_spec, tmp_path, monkeypatch):
    from lrdecay_cli.training import trainer as training

    real = training.build_model

    def poisoned(spec):
        model = real(spec)
        poison_gradient(next(model.parameters()), at_call=13)
        return model

    monkeypatch.setattr(training, "build_model", poisoned)
    result = cli("train", write_spec(), "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 1 and "the gradient became non-finite" in result.stderr
    (run,) = run_dirs(tmp_path / "runs")
    at = json.loads((run / "summary.json").read_text())["diverged"]
    assert at["step"] == 12 and at["cause"] == "gradient" and math.isfinite(at["loss"])
    lr_rows = read_csv(run / "lr.csv")
    assert int(lr_rows[-1]["step"]) == 12 and float(lr_rows[-1]["lr"]) == at["lr"]
    assert float(lr_rows[-1]["loss"]) == at["loss"]  # the step's own, finite loss


def test_a_stacked_member_with_a_non_finite_gradient_diverges_alone(cli, tmp_path, monkeypatch):
    import yaml

    from lrdecay_cli.training.stacked import StackedTrainer

    real = StackedTrainer._in_gradient_layout

    def poisoned(self, params):
        stacked, orders = real(self, params)
        poison_gradient(stacked[0], at_call=13, member=1)
        return stacked, orders

    monkeypatch.setattr(StackedTrainer, "_in_gradient_layout", poisoned)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": TINY, "seeds": 2}))
    result = cli("sweep", path, "--runs-dir", tmp_path / "runs", "--executor", "vectorized", "--quiet")
    assert result.exit_code == 1 and "1 diverged" in result.stderr, result.output  # as train exits 1 for it
    (sweep_dir,) = (tmp_path / "runs" / "sweeps").iterdir()
    first, second = (json.loads((sweep_dir / t / "summary.json").read_text()) for t in ("t000", "t001"))
    assert first["status"] == "completed" and first["epochs_completed"] == 2
    assert second["status"] == "diverged" and second["diverged"]["step"] == 12
    assert second["diverged"]["cause"] == "gradient" and math.isfinite(second["diverged"]["loss"])
    rows = [read_csv(sweep_dir / t / "lr.csv") for t in ("t000", "t001")]  # each member's own losses
    assert len(rows[0]) == 80 and len(rows[1]) == 13 and float(rows[1][-1]["loss"]) == second["diverged"]["loss"]
    assert [r["loss"] for r in rows[0][:13]] != [r["loss"] for r in rows[1]]  # seeds 0 and 1: other batches


def test_the_step_window_finds_each_members_first_bad_step_and_counts_correct_predictions():
    from lrdecay_cli.training.loop import StepWindow, first_faults

    nan, inf = float("nan"), float("inf")
    labels = torch.tensor([[0, 1], [2, 2]])
    logits = torch.tensor([[[1.0, 0, 0], [0, 1, 0]], [[0, 0, 1], [1, 0, 0]]])  # member 0: 2 right a step, member 1: 1
    window = StepWindow()  # a stack of 2: per member a loss and a gradient sum each step
    for step, (losses, sums) in enumerate([([1.0, 1.0], [0.5, 0.5]), ([1.0, 2.0], [inf, 0.5]),
                                           ([nan, nan], [nan, 0.5])], start=150):
        window.add(torch.tensor(losses), torch.tensor(sums), logits, labels, step, [0.1, 0.2])
    losses, healthy, hits, rows = window.close(2)
    assert losses.shape == (2, 3) and hits.tolist() == [6, 3] and window.losses == window.held == []
    assert healthy.tolist() == [[True, False, False], [True, True, False]]
    assert rows[0][:2] == [(150, 0.1, 1.0), (151, 0.1, 1.0)] and rows[1][:2] == [(150, 0.2, 1.0), (151, 0.2, 2.0)]
    assert [(step, lr, math.isnan(loss)) for step, lr, loss in (rows[0][2], rows[1][2])] == [(152, 0.1, True),
                                                                                             (152, 0.2, True)]
    epoch_rows = [[(s, 0.1, 1.0) for s in range(100, 150)] + member for member in rows]  # 50 steps before the window
    assert first_faults(healthy, epoch_rows, 50, [0, 1]) == [(0, 51, "gradient"), (1, 52, "loss")]
    assert first_faults(healthy, epoch_rows, 50, [1]) == [(1, 52, "loss")]

    plain = StepWindow()  # one model: scalars and [B, classes] logits
    plain.add(torch.tensor(0.5), torch.tensor(3.0), logits[0], labels[0], 0, [0.1])
    plain.add(torch.tensor(0.7), torch.tensor(-1.0), logits[1], labels[1], 1, [0.1])
    losses, healthy, hits, rows = plain.close(1)
    assert losses.tolist() == [[0.5, 0.699999988079071]] and healthy.all() and hits.tolist() == [3]
    assert rows == [[(0, 0.1, 0.5), (1, 0.1, 0.699999988079071)]]  # the float32 loss, exactly
    assert first_faults(healthy, rows, 0, [0]) == []


def test_evals_per_epoch_evaluates_within_epochs_and_changes_no_epoch_result(cli, write_spec, tmp_path):
    """train.evals_per_epoch: 3 on 40-step epochs: rows after steps 14 and 28 of each epoch besides its end;
    training, plateau (once per epoch), the summary and compare's best (over epochs' ends) are the N=1 run's."""
    from lrdecay_cli.analysis.compare import METRICS, run_result
    from lrdecay_cli.rundir.read import load_run

    plateau = {"schedule": {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 0.5}, "train": {"epochs": 3}}
    once = train_ok(cli, write_spec(plateau), tmp_path / "once")
    thrice = train_ok(cli, write_spec(merge_sections(plateau, {"train": {"evals_per_epoch": 3}})), tmp_path / "thrice")
    rows = read_csv(thrice / "metrics.csv")
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(e, 40 * (e - 1) + s) for e in (1, 2, 3)
                                                                  for s in (14, 28, 40)]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(rows[2::3]) == strip(read_csv(once / "metrics.csv"))  # each epoch's end, to the bit
    assert (thrice / "lr.csv").read_bytes() == (once / "lr.csv").read_bytes()  # plateau cut at epochs' ends only
    lrs = [float(r["lr"]) for r in read_csv(thrice / "lr.csv")]
    assert lrs[0] == 0.1 and lrs[-1] < 0.1  # it did cut
    a, b = (json.loads((run / "summary.json").read_text()) for run in (once, thrice))
    for field in ("best_val_acc", "best_epoch", "best_val_loss", "final_val_acc", "final_val_loss", "final_train_loss",
                  "test_acc", "test_loss", "steps", "epochs_completed"):
        assert a[field] == b[field], field
    losses = [float(r["loss"]) for r in read_csv(thrice / "lr.csv")]
    for row in rows[:2] + rows[3:5]:  # within an epoch: train_loss over its steps so far (whole batches)
        end = int(row["step"])
        start = 40 * (int(row["epoch"]) - 1)
        assert float(row["train_loss"]) == pytest.approx(sum(losses[start:end]) / (end - start), rel=1e-6)
        assert 0.5 < float(row["val_acc"]) <= 1 and float(row["seconds"]) > 0
    assert float(rows[0]["val_loss"]) > float(rows[2]["val_loss"])  # 14 steps in, the model is not yet the epoch's
    run = load_run(thrice)
    assert run.epoch_rows == [r for r in run.metrics if r["step"] % 40 == 0]
    assert run_result(run, METRICS["val_acc"], None).best == max(float(r["val_acc"]) for r in rows[2::3])
    assert cli("plot", thrice, "--out", tmp_path / "plots").exit_code == 0
