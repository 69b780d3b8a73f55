"""`lrdecay sweep`: expansion, results and leaderboard rebuilt from run directories, failures, resume."""

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import TINY, assert_same_lrs_close_losses, read_csv
from lrdecay_cli.config import sweep_file
from lrdecay_cli.experiments import sweep as sweeps

BASE = {**TINY, "data": {"limit": 1500, "val_size": 300}, "model": {"name": "mlp", "hidden": [16]},
        "train": {**TINY["train"], "epochs": 1}}


def write_sweep(tmp_path, **sweep) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": BASE, **sweep}))
    return path


def only_sweep_dir(runs: Path) -> Path:
    (path,) = (runs / "sweeps").iterdir()
    return path


def test_expansion_is_variants_times_grid_times_draws_times_seeds(tmp_path):
    path = write_sweep(tmp_path, variants=[{"schedule": {"name": "step", "step_size": 1}},
                                           {"schedule": {"name": "exponential", "decay_steps": 5}}],
                       grid={"optimizer.lr": [0.1, 0.03]},
                       random={"n": 3, "seed": 4, "fields": {"optimizer.momentum": [0.5, 0.9],
                                                             "train.batch_size": [32, 64]}},
                       seeds=2)
    sweep, base = sweep_file.load(path)
    trials = sweep_file.expand(sweep, base, str(path))
    assert len(trials) == 2 * 2 * 3 * 2
    assert [t.dirname for t in trials[:3]] == ["t000", "t001", "t002"]
    first = trials[0]
    assert first.fields["schedule.name"] == "step" and first.spec.schedule.step_size == 1
    assert first.spec.optimizer.lr == first.fields["optimizer.lr"] == 0.1
    assert {t.spec.seed for t in trials} == {0, 1}
    again = sweep_file.expand(*sweep_file.load(path), str(path))
    assert [t.fields for t in again] == [t.fields for t in trials]  # seeded draws: a resume finds the same trials


def test_log_uniform_draws_stay_in_range(tmp_path):
    path = write_sweep(tmp_path, random={"n": 50, "fields": {"optimizer.lr": {"log_uniform": [1e-3, 1e-1]}}})
    lrs = [t.spec.optimizer.lr for t in sweep_file.expand(*sweep_file.load(path), str(path))]
    assert all(1e-3 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == 50
    assert min(lrs) < 1e-2 < max(lrs)  # spread over decades, not bunched at the top


def test_command_line_grid_switches_methods(cli, tmp_path):
    quickstart = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
    out = cli("sweep", quickstart, "--grid", "schedule.name=step,exponential,inverse_time",
              "--grid", "optimizer.lr=0.1,0.03", "--seeds", "3", "--dry-run", "--runs-dir", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    assert "18 trials" in out.stdout and not (tmp_path / "runs").exists()


def test_a_grid_of_methods_keeps_the_base_parameters_of_its_own_method(cli, tmp_path):
    """The issue's command: exponential keeps the quickstart's 860 / 0.5 in either order of the values,
    and the dry run shows every trial's resolved schedule."""
    quickstart = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
    for values in ("step,exponential", "exponential,step"):
        out = cli("sweep", quickstart, "--grid", f"schedule.name={values}", "--set", "data.limit=2000",
                  "--set", "data.val_size=500", "--set", "train.epochs=1", "--dry-run")
        assert out.exit_code == 0, out.output
        assert "exponential(interval=step, decay_steps=860, decay_rate=0.5, staircase=False)" in out.stdout
        assert "step(interval=epoch, step_size=10, gamma=0.1)" in out.stdout


METHODS_BY_NAME = ["constant", "step", "exponential", "inverse_time", "polynomial", "cosine", "plateau",
                   "linear", "cosine_annealing", "one_cycle", "polynomial_torch", "wsd"]
"""Methods whose every parameter has a default, so a grid may name them alone."""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names=st.lists(st.sampled_from(METHODS_BY_NAME), min_size=1, max_size=5, unique=True),
       lrs=st.lists(st.sampled_from([0.3, 0.1, 0.03, 0.01]), min_size=1, max_size=3, unique=True),
       momenta=st.lists(st.sampled_from([0.0, 0.5, 0.9]), max_size=3, unique=True),
       order=st.randoms(use_true_random=False))
def test_trials_do_not_depend_on_the_order_of_grid_values(names, lrs, momenta, order):
    """Each trial is built from a fresh copy of the base: reordering grid values and variants changes
    only the trial order, never a trial's spec; the base is recorded as written."""
    import copy

    base = copy.deepcopy(BASE)
    written = copy.deepcopy(base)
    variants = [{"optimizer": {"momentum": m}} for m in momenta]

    def trial_specs(grid_names, grid_lrs, variant_list):
        sweep = sweep_file.SweepSpec(name="p", variants=variant_list,
                                 grid={"schedule.name": grid_names, "optimizer.lr": grid_lrs}, seeds=[0])
        trials = sweep_file.expand(sweep, base, "test")
        assert base == written  # nothing written back into the base
        assert yaml.safe_load(sweep_file.resolved_yaml(sweep, base))["base"] == written
        return sweep, {json.dumps(t.fields, sort_keys=True): t.spec.model_dump(mode="json") for t in trials}

    _, first = trial_specs(names, lrs, variants)
    shuffled = [order.sample(x, len(x)) for x in (names, lrs, variants)]
    _, second = trial_specs(*shuffled)
    assert first == second
    for fields, spec in first.items():
        if json.loads(fields)["schedule.name"] == BASE["schedule"]["name"]:  # the base's own method: its values
            assert spec["schedule"]["decay_steps"] == BASE["schedule"]["decay_steps"]
            assert spec["schedule"]["decay_rate"] == BASE["schedule"]["decay_rate"]


def test_a_variant_naming_the_base_method_keeps_its_parameters(tmp_path):
    path = write_sweep(tmp_path, variants=[{"schedule": {"name": "step"}}, {"schedule": {"name": "exponential"}},
                                           {"schedule": {"decay_rate": 0.5}}])
    sweep, base = sweep_file.load(path)
    step, same, changed = (t.spec.schedule for t in sweep_file.expand(sweep, base, str(path)))
    assert (step.step_size, step.gamma) == (10, 0.1)  # another method: its own defaults
    assert (same.decay_steps, same.decay_rate) == (20, 0.8)  # the base's method: the base's values
    assert (changed.decay_steps, changed.decay_rate) == (20, 0.5)


def test_sweep_results_and_leaderboard(cli, tmp_path):
    path = write_sweep(tmp_path, variants=[{"schedule": {"name": "step", "step_size": 1, "gamma": 0.5}},
                                           {"schedule": {"name": "constant"}}], seeds=3)
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    sweep_dir = only_sweep_dir(tmp_path / "runs")
    rows = read_csv(sweep_dir / "results.csv")
    assert [r["trial"] for r in rows] == [f"t00{i}" for i in range(6)]
    assert all(r["status"] == "completed" for r in rows)
    for row in rows:  # every row is what its run directory says
        summary = json.loads((sweep_dir / row["trial"] / "summary.json").read_text())
        assert float(row["best_val_acc"]) == summary["best_val_acc"] and int(row["seed"]) == summary["seed"]
    board = read_csv(sweep_dir / "leaderboard.csv")
    assert len(board) == 2
    for entry in board:
        values = [float(r["best_val_acc"]) for r in rows if r["schedule.name"] == entry["schedule.name"]]
        mean, half = statistics.fmean(values), 4.30265273 * statistics.stdev(values) / math.sqrt(3)  # t.ppf(0.975, 2)
        assert float(entry["best_mean"]) == pytest.approx(mean)
        assert float(entry["best_std"]) == pytest.approx(statistics.stdev(values))
        assert (float(entry["ci95_low"]), float(entry["ci95_high"])) == pytest.approx((mean - half, mean + half))
        assert entry["n"] == "3" and entry["metric"] == "val_acc"
    assert float(board[0]["best_mean"]) >= float(board[1]["best_mean"])
    assert [r["rank"] for r in board] == ["1", "2"] and board[0]["vs_best"] == "best"
    compared = cli("compare", sweep_dir, "--csv")  # one ranking: the leaderboard is compare's
    assert compared.exit_code == 0 and compared.stdout == (sweep_dir / "leaderboard.csv").read_text()
    resolved = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    assert resolved["seeds"] == [0, 1, 2] and resolved["base"]["model"]["hidden"] == [16]


def test_failed_and_diverged_trials_do_not_stop_the_sweep_and_resume_runs_only_the_rest(cli, tmp_path):
    path = write_sweep(tmp_path, variants=[{"optimizer": {"name": "sgd", "lr": 1e6}, "schedule": {"name": "constant"}},
                                           {"train": {"device": "cuda:7"}},
                                           {}])
    out = cli("sweep", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert out.exit_code == 1 and "2 of 3 trials did not complete (1 diverged, 1 failed)" in out.stderr
    sweep_dir = only_sweep_dir(tmp_path / "runs")
    statuses = [r["status"] for r in read_csv(sweep_dir / "results.csv")]
    assert statuses == ["diverged", "failed", "completed"]
    assert "cuda" in read_csv(sweep_dir / "results.csv")[1]["message"].lower()

    kept = (sweep_dir / "t002" / "summary.json").read_text()
    summary_t0 = sweep_dir / "t000" / "summary.json"
    interrupted = json.loads(summary_t0.read_text()) | {"status": "interrupted"}
    summary_t0.write_text(json.dumps(interrupted))
    plan = cli("sweep", "--resume", sweep_dir, "--dry-run")
    assert "2 of 3 trials still to run" in plan.stdout
    assert cli("sweep", "--resume", sweep_dir, "--quiet").exit_code == 1  # t001 still has no cuda:7
    assert (sweep_dir / "t002" / "summary.json").read_text() == kept  # not run twice
    assert [r["status"] for r in read_csv(sweep_dir / "results.csv")] == ["diverged", "failed", "completed"]


def test_processes_executor_matches_sequential(cli, tmp_path):
    path = write_sweep(tmp_path, grid={"schedule.decay_rate": [0.5, 0.9]}, seeds=2)
    assert cli("sweep", path, "--runs-dir", tmp_path / "seq", "--quiet").exit_code == 0
    out = cli("sweep", path, "--runs-dir", tmp_path / "proc", "--executor", "processes", "--workers", "2", "--quiet")
    assert out.exit_code == 0, out.output
    seq, proc = only_sweep_dir(tmp_path / "seq"), only_sweep_dir(tmp_path / "proc")
    for trial in ("t000", "t001", "t002", "t003"):
        # worker processes use 1 thread where this one uses 2: BLAS sums in another order, so agree closely
        assert_same_lrs_close_losses(seq / trial / "lr.csv", proc / trial / "lr.csv", rel=1e-4)
        a, b = read_csv(seq / trial / "metrics.csv"), read_csv(proc / trial / "metrics.csv")
        assert float(a[0]["train_loss"]) == pytest.approx(float(b[0]["train_loss"]), rel=1e-4)


def test_shipped_sweep_specs_expand():
    for path in sorted((Path(__file__).resolve().parent.parent / "configs" / "sweeps").glob("*.yaml")):
        assert path.read_text().startswith("# ")
        sweep, base = sweep_file.load(path)
        trials = sweep_file.expand(sweep, base, str(path))
        assert len(trials) == max(1, len(sweep.variants)) * len(sweep.seed_list())


def test_a_sweep_takes_the_name_given_and_its_figures_show_it(cli, tmp_path):
    from lrdecay_cli.output import plot
    from lrdecay_cli.rundir.read import collect

    path = write_sweep(tmp_path, grid={"optimizer.lr": [0.1, 0.05]})
    out = cli("sweep", path, "--name", "lr-study", "--runs-dir", tmp_path / "runs", "--quiet")
    assert out.exit_code == 0, out.output
    sweep_dir = only_sweep_dir(tmp_path / "runs")
    assert sweep_dir.name.endswith("-lr-study") and sweeps.reopen(sweep_dir).sweep.name == "lr-study"
    figure = plot.figures(collect([sweep_dir])).figures["lr"]
    assert any("lr-study" in text.get_text() for text in [*figure.texts, *(ax.title for ax in figure.axes)])
    bad = cli("sweep", path, "--name", "../up", "--dry-run")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --name: '../up' is not a sweep name")


@pytest.mark.parametrize("executor, epochs", [("vectorized", [1, 2]), ("sequential", [1, 2, 1, 2])])
def test_the_sweep_display_sees_each_stacks_epochs(write_spec, tmp_path, executor, epochs):
    """The progress object's `observer` gets the training loop's epochs (one stack, or one per trial)."""
    from lrdecay_cli.config import sweep_file
    from lrdecay_cli.experiments import sweep as sweeps

    seen = []

    class Display:
        def __init__(self, todo):
            self.observer = self

        def on_start(self, *args): ...
        def on_done(self, trial, summary): ...
        def stop(self): ...
        def on_epoch_start(self, epoch, total, steps):
            seen.append(epoch)
        def on_progress(self, *args): ...
        def on_epoch_end(self, row): ...
        def on_finish(self, summary): ...

    plan = sweeps.plan(write_spec(), ["optimizer.lr=0.05,0.1"], None, ["data.limit=600", "data.val_size=100"])
    outcome = sweeps.execute(plan, tmp_path / "runs", executor, Display)
    assert [row["status"] for row in outcome.rows] == ["completed"] * 2 and seen == epochs


def test_the_readme_command_line_sweep_decays_in_every_trial(cli, tmp_path):
    """The README's own command-line sweep, as printed there: no trial keeps a constant LR by accident
    (a step trial that never reaches its first decay), and each method's trials use its own parameters."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (command,) = re.findall(r"`(lrdecay sweep configs/quickstart\.yaml --grid schedule\.name=[^`]+)`", readme)
    args = shlex.split(command)[1:]
    out = cli(*[a if a != "configs/quickstart.yaml" else str(Path(__file__).resolve().parent.parent / a)
                for a in args], "--dry-run", "--runs-dir", tmp_path / "runs")
    assert out.exit_code == 0, out.output
    assert "never changes" not in out.output
    assert "decay_steps=860" in out.stdout  # the base's own method keeps its values
    assert out.stdout.count("decay_steps=860") == out.stdout.count("exponential(")
