"""Every spec in configs/ is documented, valid, and trains for one short epoch on a subset."""

import json
import math
from pathlib import Path

import pytest

from conftest import run_dirs, step_lrs
from lrdecay_cli.config import spec_file as spec
from lrdecay_cli.config.spec_file import flatten

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
FAMILIES = {"quickstart", "step", "exponential", "inverse_time", "plateau", "cosine", "cosine_restarts",
            "one_cycle", "warmup_cosine", "wsd"}


def test_one_spec_per_family():
    assert FAMILIES <= {c.stem for c in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_config_is_documented_and_trains(cli, tmp_path, config):
    assert config.read_text().startswith("# "), "each config opens with a comment on when to use it"
    short = ["--set", "data.limit=1500", "--set", "data.val_size=300", "--set", "train.epochs=1",
             "--set", "train.device=cpu"]
    if spec.load(config).model.name == "cnn":  # its evaluation of the 10,000 test images alone takes seconds
        short += ["--set", "model.name=mlp"]  # on a CPU; test_train trains the cnn, here the config's data,
                                              # optimizer and schedule
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet", *short)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    steps = math.ceil(1200 / spec.load(config).train.batch_size)  # 19 at batch 64
    assert summary["status"] == "completed" and summary["steps"] == steps
    preview = cli("schedule", config, "--steps", steps, *short)
    assert preview.stdout == step_lrs(run / "lr.csv")


def test_the_readme_shows_the_committed_showcase():
    """`make showcase` rewrites docs/study/; the README must show its test-accuracy table, and the figure it links."""
    readme = (REPO / "README.md").read_text()
    report = (REPO / "docs" / "study" / "report.md").read_text()
    table = report[report.index("| method | 1 epoch |"):report.index("## Average rank")].strip()
    assert table in readme
    assert "](docs/study/test_acc_vs_budget.png)" in readme and (REPO / "docs/study/test_acc_vs_budget.png").is_file()


RECIPES = {
    "keras_mnist": {"data.val_size": 0, "data.normalize": "unit", "model.name": "mlp", "model.hidden": [128],
                    "model.init": "glorot_uniform", "optimizer.name": "sgd", "optimizer.lr": 0.1,
                    "optimizer.momentum": 0.0, "schedule.name": "exponential", "schedule.decay_rate": 0.96,
                    "schedule.staircase": True, "train.epochs": 5, "train.batch_size": 32},
    "pytorch_examples_mnist": {"seed": 1, "data.val_size": 0, "data.normalize": "standard", "model.name": "cnn",
                               "optimizer.name": "adadelta", "optimizer.lr": 1.0, "optimizer.rho": 0.9,
                               "optimizer.eps": 1e-6, "schedule.name": "step", "schedule.step_size": 1,
                               "schedule.gamma": 0.7, "schedule.interval": "epoch", "train.epochs": 14,
                               "train.batch_size": 64, "train.eval_batch_size": 1000},
}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_configs_hold_the_recipe_and_say_what_differs(name):
    """The two recipes users come from: their settings, and a header with the command and the differences."""
    config = REPO / "configs" / f"{name}.yaml"
    text = config.read_text()
    assert f"lrdecay train configs/{name}.yaml" in text and "What still differs" in text
    loaded = flatten(spec.load(config).model_dump(mode="json"))
    assert {key: loaded[key] for key in RECIPES[name]} == RECIPES[name]


def test_pytorch_examples_lr_is_step_lr_per_epoch(cli):
    """main.py's scheduler.step() after each epoch: epoch e (from 1) trains at 1.0 * 0.7 ** (e - 1)."""
    result = cli("schedule", REPO / "configs" / "pytorch_examples_mnist.yaml", "--format", "json")
    lrs = [row["lr"] for row in json.loads(result.stdout)]
    assert len(lrs) == 14 * 938  # 60,000 images at batch 64, the last batch partial
    assert [lrs[938 * e] for e in range(14)] == pytest.approx([0.7 ** e for e in range(14)], rel=1e-12)
    assert all(lrs[938 * e + 937] == lrs[938 * e] for e in range(14))


def test_keras_config_trains_as_written_on_all_images(cli, tmp_path):
    config = REPO / "configs" / "keras_mnist.yaml"
    result = cli("train", config, "--runs-dir", tmp_path / "runs", "--quiet", "--set", "data.limit=640",
                 "--set", "train.epochs=1", "--set", "train.device=cpu")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["train_size"], summary["val_size"], summary["steps"]) == (640, 0, 20)
    assert summary["final_val_acc"] is None and summary["test_acc"] > 0.5
