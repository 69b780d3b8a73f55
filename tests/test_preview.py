"""`lrdecay schedule` previews exactly what training uses; `lrdecay schedules` lists the registry."""

import json

import pytest

from conftest import read_csv, run_dirs, step_lrs
from lrdecay_cli.schedules import METHODS

WARMUP_SEQUENCE = {
    "name": "sequence", "interval": "step", "boundaries": [30],
    "phases": [{"name": "constant"}, {"name": "exponential", "decay_steps": 7, "decay_rate": 0.9, "staircase": True}],
    "warmup": {"steps": 12, "shape": "exponential", "start_factor": 0.05},
}


@pytest.mark.parametrize("schedule", [
    WARMUP_SEQUENCE,
    {"name": "step", "step_size": 1, "gamma": 0.7, "interval": "epoch", "warmup": {"epochs": 1}},
    {"name": "inverse_time", "decay_steps": 3, "decay_rate": 0.2},
], ids=["warmup+sequence", "step-epochs", "inverse_time"])
def test_training_uses_exactly_the_previewed_lrs(cli, write_spec, tmp_path, schedule):
    spec = write_spec({"schedule": schedule, "train": {"epochs": 3}})
    result = cli("train", spec, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    preview = cli("schedule", spec, "--steps", 120)
    assert preview.exit_code == 0, preview.output
    assert preview.stdout == step_lrs(run / "lr.csv")


def test_csv_and_json_formats(cli, write_spec):
    spec = write_spec({"schedule": {"name": "exponential", "decay_steps": 3, "decay_rate": 0.5}})
    csv_out = cli("schedule", spec, "--steps", 10)
    lines = csv_out.stdout.splitlines()
    assert lines[0] == "step,lr" and len(lines) == 11
    for line in lines[1:]:
        step, lr = line.split(",")
        assert lr == repr(0.1 * 0.5 ** (int(step) / 3))
    rows = json.loads(cli("schedule", spec, "--steps", 10, "--format", "json").stdout)
    assert rows == [{"step": s, "lr": 0.1 * 0.5 ** (s / 3)} for s in range(10)]
    assert "40 steps per epoch" in csv_out.stderr


def test_default_length_is_the_whole_run(cli, write_spec):
    out = cli("schedule", write_spec({"train": {"epochs": 3}}))
    assert len(out.stdout.splitlines()) == 1 + 3 * 40


def test_epoch_interval_and_plateau_are_explained(cli, write_spec):
    out = cli("schedule", write_spec({"schedule": {"name": "plateau", "patience": 1, "factor": 0.5}}), "--steps", 240)
    assert "interval: epoch" in out.stderr and "never improves" in out.stderr
    lrs = [float(r["lr"]) for r in read_csv_text(out.stdout)]
    # 40 steps per epoch; metric flat after epoch 1: bad epochs 2, 3 -> decay after epoch 3, again after 5
    assert lrs == [0.1] * 120 + [0.05] * 80 + [0.025] * 40


def read_csv_text(text):
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_terminal_plot_and_png(cli, write_spec, tmp_path):
    spec = write_spec({"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}})
    plot = cli("schedule", spec, "--format", "plot", "--png", tmp_path / "lr.png")
    assert plot.exit_code == 0, plot.output
    assert "1.000e-01" in plot.stdout and "5.000e-02" in plot.stdout and "step" in plot.stdout
    from matplotlib import image

    pixels = image.imread(tmp_path / "lr.png")
    assert pixels.shape[:2] == (400, 800) and pixels.std() > 0.01


@pytest.mark.parametrize("schedule,expected", [
    ({"name": "cosine_decay_x"}, "schedule.name: unknown schedule method 'cosine_decay_x'"),
    ({"name": "exponential", "gamma": 0.5}, "schedule.gamma: unknown key 'gamma'"),
    ({"name": "step", "gamma": -0.5}, "schedule.gamma: must be greater than 0"),
    ({"name": "sequence", "boundaries": [1, 2], "phases": [{"name": "constant"}]}, "1 phases need 0 boundaries"),
    ({"name": "sequence", "boundaries": [5, 3], "phases": [{"name": "constant"}] * 3}, "strictly increasing"),
    ({"name": "piecewise_constant", "boundaries": [10, 20], "values": [0.1, 0.01]}, "schedule.values: 2 boundaries need 3 values"),
    ({"name": "multistep", "milestones": [3, 3, 5]}, "schedule.milestones: milestones must be strictly increasing"),
    ({"name": "cosine", "alpha": 1.5}, "schedule.alpha: must be less than or equal to 1"),
])
def test_bad_schedules_are_one_line_exit_2(cli, write_spec, schedule, expected):
    out = cli("schedule", write_spec({"schedule": schedule}), "--steps", 5)
    assert out.exit_code == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr


def test_bad_format_and_png_path(cli, write_spec, tmp_path):
    assert cli("schedule", write_spec(), "--format", "svgz").exit_code == 2
    out = cli("schedule", write_spec(), "--png", tmp_path / "missing" / "lr.png")
    assert out.exit_code == 2 and "--png" in out.stderr


def test_schedules_lists_every_method(cli):
    out = cli("schedules")
    assert out.exit_code == 0
    for name, method in METHODS.items():
        assert name in out.stdout and method.origin.split()[0] in out.stdout


def test_schedules_name_shows_one_methods_parameters(cli):
    out = cli("schedules", "exponential")
    assert out.exit_code == 0
    for field in ("decay_steps", "decay_rate", "staircase", "interval", "warmup"):
        assert field in out.stdout
    assert "> 0" in out.stdout and "Keras ExponentialDecay" in out.stdout
    bad = cli("schedules", "exponentail")
    assert bad.exit_code == 2 and "did you mean 'exponential'" in bad.stderr


def test_a_schedule_that_never_changes_the_lr_is_warned_of_everywhere(cli, write_spec, tmp_path):
    """step's default step_size of 10 epochs on a 2-epoch run: the LR never moves. train, schedule and
    sweep --dry-run all say so, with the LR and the parameter to change; a moving schedule, constant
    and plateau get no warning."""
    flat = write_spec({"schedule": {"name": "step"}}, "flat.yaml")
    expected = ("warning: the schedule never changes the LR in this run: 0.1 from step 0 to step 79 "
                "(2 epochs of 40 steps); change schedule.step_size, or train longer")
    shown = cli("schedule", flat, "--steps", "3")
    assert shown.exit_code == 0 and expected in shown.stderr.splitlines()
    trained = cli("train", flat, "--runs-dir", tmp_path / "runs")
    assert trained.exit_code == 0 and trained.stderr.startswith(expected + "\n")
    planned = cli("sweep", flat, "--grid", "schedule.name=step,exponential", "--dry-run")
    assert planned.exit_code == 0 and planned.stderr == f"warning: t000: {expected[len('warning: '):]}\n"
    for moving in ({}, {"schedule": {"name": "constant"}}, {"schedule": {"name": "plateau"}},
                   {"schedule": {"name": "step", "step_size": 1, "interval": "epoch"}}):
        out = cli("schedule", write_spec(moving, "moving.yaml"), "--steps", "3")
        assert out.exit_code == 0 and "warning" not in out.stderr, (moving, out.stderr)


def test_schedule_png_says_where_it_wrote_and_titles_once(cli, write_spec, tmp_path, monkeypatch):
    import matplotlib.figure
    from PIL import Image

    titles = []
    real = matplotlib.figure.Figure.savefig

    def record(fig, *args, **kwargs):
        titles.extend(ax.get_title() for ax in fig.axes)
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    spec = write_spec({"name": "plateau", "schedule": {"name": "plateau"}})
    target = tmp_path / "curve.png"
    out = cli("schedule", spec, "--png", target, "--steps", "5")
    assert out.exit_code == 0 and f"note: wrote {target}" in out.stderr.splitlines()
    assert out.stdout.splitlines()[0] == "step,lr" and Image.open(target).size == (800, 400)
    assert titles == ["plateau"]  # the method alone where the spec is named after it, not "plateau: plateau"
