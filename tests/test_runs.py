"""Reading run and sweep directories back: typed rows, clear errors for damaged files, groups by seed,
labels from the spec fields that differ; and `lrdecay runs`, the listing of a runs directory (listing.py)."""

import csv
import io
import json
import shutil

import pytest
import yaml

from conftest import TINY, read_csv
from lrdecay_cli.analysis import grouping
from lrdecay_cli.rundir import read as runs
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir.layout import METRICS_COLUMNS


def test_a_sweep_expands_to_its_trials_with_typed_rows(finished_sweep):
    found = runs.collect([finished_sweep])
    assert [r.path.name for r in found] == ["t000", "t001", "t002", "t003", "t004", "t005"]
    first = found[0]
    csv_rows = read_csv(first.path / "metrics.csv")
    assert len(first.metrics) == len(csv_rows) == 3
    for row, raw in zip(first.metrics, csv_rows):
        assert row["epoch"] == int(raw["epoch"]) and row["val_acc"] == float(raw["val_acc"])
    assert [r["lr"] for r in first.lr] == [float(r["lr"]) for r in read_csv(first.path / "lr.csv")]
    assert first.summary == json.loads((first.path / "summary.json").read_text())
    assert first.config["schedule.name"] == "constant" and first.seed == 0


def test_the_same_directory_is_read_once(finished_sweep):
    found = runs.collect([finished_sweep / "t000", finished_sweep, finished_sweep / "t000"])
    assert len(found) == 6 and found[0].path.name == "t000"


def test_groups_are_the_runs_that_differ_only_by_seed(finished_sweep):
    groups = grouping.group_runs(runs.collect([finished_sweep]))
    assert [g.label for g in groups] == ["constant", "step", "cosine"]
    assert [g.seeds for g in groups] == [[0, 1], [0, 1], [0, 1]]
    assert groups[1].fields == {"schedule.name": "step"}  # step_size, gamma follow from the method


def test_labels_name_fields_that_vary_within_a_method(finished_sweep, tmp_path):
    found = runs.collect([finished_sweep / "t002", finished_sweep / "t003"])  # step, seeds 0 and 1
    found[1].config = {**found[1].config, "schedule.gamma": 0.5, "optimizer.lr": 0.05}
    assert grouping.differing_fields(found) == ["optimizer.lr", "schedule.gamma"]
    assert [g.label for g in grouping.group_runs(found)] == ["lr=0.1, gamma=0.3", "lr=0.05, gamma=0.5"]
    assert grouping.label_of({"model.hidden": [64, 32], "model.dropout": 0.25, "train.dropout": 0.5}) \
        == "hidden=[64,32], model.dropout=0.25, train.dropout=0.5"


def test_identical_runs_are_labelled_by_their_name(finished_sweep):
    (group,) = grouping.group_runs(runs.collect([finished_sweep / "t000"]))
    assert group.label == group.runs[0].summary["name"]


@pytest.mark.parametrize("damage,where,message", [
    (lambda p: p.write_text(p.read_text() + "4,100,0.1,0.5\n"), ":5", "4 cells, expected 8"),
    (lambda p: p.write_text(p.read_text().replace("\n2,", "\nx,", 1)), ":3", "invalid literal"),
    (lambda p: p.write_text("epoch,loss\n1,2\n"), ":1", "unexpected header"),
])
def test_a_torn_csv_names_its_file_and_line(finished_sweep, tmp_path, damage, where, message):
    run = tmp_path / "run"
    shutil.copytree(finished_sweep / "t000", run)
    damage(run / "metrics.csv")
    with pytest.raises(UserError) as caught:
        runs.load_run(run).metrics
    line = caught.value.line()
    assert f"{run / 'metrics.csv'}{where}" in line and message in line


def test_missing_csvs_are_no_rows_and_empty_cells_are_none(tmp_path, finished_sweep):
    run = tmp_path / "run"
    shutil.copytree(finished_sweep / "t000", run)
    (run / "lr.csv").unlink()
    (run / "metrics.csv").write_text(",".join(METRICS_COLUMNS) + "\n1,25,0.1,0.5,0.8,,,1.0\n")
    loaded = runs.load_run(run)
    assert loaded.lr == [] and loaded.metrics[0]["val_acc"] is None


@pytest.mark.parametrize("make,message", [
    (lambda d: None, "not a run or sweep directory"),
    (lambda d: (d / "config.yaml").write_text("name: x\n"), "not a run or sweep directory"),
    (lambda d: [(d / "config.yaml").write_text("name: x\n"), (d / "summary.json").write_text("{torn")],
     "summary.json is not valid JSON"),
    (lambda d: (d / "sweep.yaml").write_text("name: s\n"), "the sweep has no started trials yet"),
])
def test_what_is_not_a_run_is_a_clear_error(tmp_path, make, message):
    target = tmp_path / "target"
    target.mkdir()
    make(target)
    with pytest.raises(UserError, match=message):
        runs.collect([target])
    with pytest.raises(UserError, match="no such directory"):
        runs.collect([tmp_path / "missing"])


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from lrdecay_cli.rundir.fs import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.csv", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644


# -- `lrdecay runs`: the listing of a runs directory (listing.py) --------------------------------------

def make_run(path, status="completed", method="step", best=0.9712, test=0.9699, done=3, **summary):
    """A run directory written by hand: config.yaml with its method, summary.json with its results."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"name": path.name[16:] or "t", "seed": 0,
                                                      "schedule": {"name": method}}))
    (path / "summary.json").write_text(json.dumps({
        "status": status, "name": path.name[16:] or "trial", "epochs": 3, "epochs_completed": done,
        "best_val_acc": best, "best_val_loss": None if best is None else round(1 - best, 6), "test_acc": test,
        "started_at": "2026-12-01T10:00:00+00:00", **summary}))
    return path


def make_sweep(path, trials, **sweep):
    """A sweep directory by hand: sweep.yaml of constant, step, cosine x 2 seeds, and `trials` as
    (status, best_val_acc, test_acc) for t000, t001, ... (None: not started)."""
    path.mkdir(parents=True)
    (path / "sweep.yaml").write_text(yaml.safe_dump({"name": path.name[16:] or path.name, "base": TINY, "seeds": 2,
                                                     "grid": {"schedule.name": ["constant", "step", "cosine"]},
                                                     **sweep}))
    for number, trial in enumerate(trials):
        if trial is not None:
            status, best, test = trial
            make_run(path / f"t{number:03d}", status, best=best, test=test)
    return path


@pytest.fixture
def runs_dir(tmp_path):
    """A runs directory of every kind: runs (one killed), a find-lr, sweeps (complete, failed), a study,
    and what is not a run (a torn summary, an empty stamped directory, plots/, a README)."""
    root = tmp_path / "runs"
    make_run(root / "20261201-090000-quickstart", method="exponential", best=0.9771, test=0.9789)
    make_run(root / "20261201-100000-killed", status="running", method="cosine", best=0.9533, test=None, done=2)
    make_run(root / "20261201-110000-quickstart-find-lr", best=None, test=None, suggested_lr=0.0412)
    make_sweep(root / "sweeps" / "20261201-120000-methods", [("completed", 0.95, 0.951), ("completed", 0.97, 0.968),
                                                              ("completed", 0.99, 0.981), ("failed", 0.5, None),
                                                              ("completed", 0.96, 0.955), None])
    make_sweep(root / "sweeps" / "20261201-130000-done", [("completed", 0.9, 0.9)] * 5 + [("diverged", 0.1, None)],
               metric="val_loss")
    study = root / "studies" / "20261201-140000-study"
    study.mkdir(parents=True)
    (study / "study.yaml").write_text("name: lr_study\n")
    make_sweep(study / "tune", [("completed", 0.9, 0.9)] * 6)
    make_sweep(study / "final", [("completed", 0.98, 0.975)] * 6)
    torn = root / "20261201-150000-torn"
    make_run(torn)
    (torn / "summary.json").write_text('{"status": "comp')
    (root / "20261201-160000-empty").mkdir()
    (root / "plots").mkdir()
    (root / "README.md").write_text("runs\n")
    return root


def test_runs_lists_every_kind_newest_first_from_its_files(cli, runs_dir):
    out = cli("runs", runs_dir, "--format", "csv")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    got = [(r["directory"].removeprefix(f"{runs_dir}/"), r["kind"], r["name"], r["status"], r["detail"],
            r["schedule"], r["best_val_acc"], r["test_acc"], r["best_trial"], r["metric"]) for r in rows]
    assert got == [
        ("20261201-160000-empty", "run", "empty", "unreadable", "unreadable: no summary.json",
         "-", "", "", "", ""),
        ("20261201-150000-torn", "run", "torn", "unreadable", "unreadable: torn summary.json",
         "-", "", "", "", ""),
        ("studies/20261201-140000-study", "study", "lr_study", "completed", "final: 6/6 completed",
         "constant, step, cosine", "0.98", "0.975", "t000", "val_acc"),
        ("sweeps/20261201-130000-done", "sweep", "done", "diverged", "5/6 completed, 1 diverged",
         "constant, step, cosine", "0.9", "0.9", "t000", "val_loss"),
        ("sweeps/20261201-120000-methods", "sweep", "methods", "failed", "4/6 completed, 1 failed",
         "constant, step, cosine", "0.99", "0.981", "t002", "val_acc"),
        ("20261201-110000-quickstart-find-lr", "find-lr", "quickstart-find-lr", "completed", "completed",
         "LR range test: 0.0412", "", "", "", ""),
        ("20261201-100000-killed", "run", "killed", "interrupted", "interrupted (killed), 2/3 epochs",
         "cosine", "0.9533", "", "", ""),
        ("20261201-090000-quickstart", "run", "quickstart", "completed", "completed", "exponential", "0.9771",
         "0.9789", "", ""),
    ]
    assert rows[-1]["when"] == "2026-12-01T09:00:00+00:00" and out.stderr == ""


def test_runs_filters_by_status_and_name(cli, runs_dir):
    def listed(*args):
        out = cli("runs", runs_dir, "--format", "csv", *args)
        assert out.exit_code == 0, out.output
        return [r["name"] for r in csv.DictReader(io.StringIO(out.stdout))]

    assert listed("--status", "interrupted") == ["killed"]
    assert listed("--status", "completed") == ["lr_study", "quickstart-find-lr", "quickstart"]
    assert listed("--status", "failed") == ["methods"]
    assert listed("--name", "QUICK") == ["quickstart-find-lr", "quickstart"]
    assert listed("--name", "quick", "--status", "completed") == ["quickstart-find-lr", "quickstart"]
    none = cli("runs", runs_dir, "--status", "running")
    assert none.exit_code == 0 and none.stdout == ""
    assert none.stderr == f"note: no runs, sweeps or studies in {runs_dir} match --status running (of 8)\n"
    shown = cli("runs", "--help")
    assert "running|completed|diverged|interrupted|failed|pending" in shown.stdout
    bad = cli("runs", runs_dir, "--status", "done")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: Invalid value for '--status': 'done'")


def test_a_run_held_by_a_live_process_is_running_and_one_whose_process_died_is_killed(cli, runs_dir):
    import os
    import subprocess
    import sys

    killed = runs_dir / "20261201-100000-killed"
    (killed / ".lock").write_text(f"{os.getpid()}\n")
    assert list(csv.DictReader(io.StringIO(cli("runs", runs_dir, "--format", "csv", "--status", "running").stdout))) \
        [0]["detail"] == "running, 2/3 epochs"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (killed / ".lock").write_text(gone.stdout)
    rows = list(csv.DictReader(io.StringIO(cli("runs", runs_dir, "--format", "csv", "--name", "killed").stdout)))
    assert [r["detail"] for r in rows] == ["interrupted (killed), 2/3 epochs"]
    sweep = runs_dir / "sweeps" / "20261201-120000-methods"
    (sweep / ".lock").write_text(f"{os.getpid()}\n")
    rows = list(csv.DictReader(io.StringIO(cli("runs", runs_dir, "--format", "csv", "--name", "methods").stdout)))
    assert [(r["status"], r["detail"]) for r in rows] == [("running", "running, 4/6 completed, 1 failed")]


@pytest.mark.parametrize("trials, state, detail", [
    ([("completed", 0.9, 0.9)] * 6, "completed", "6/6 completed"),
    ([("completed", 0.9, 0.9)] * 3 + [("interrupted", 0.5, None)] + [None] * 2, "interrupted",
     "3/6 completed, 1 interrupted"),
    ([("completed", 0.9, 0.9)] * 2 + [("running", 0.5, None)] * 2, "interrupted", "2/6 completed, 2 interrupted"),
    ([("completed", 0.9, 0.9)] * 2, "interrupted", "interrupted, 2/6 completed"),
    ([], "pending", "pending, 0/6 completed"),
])
def test_a_sweeps_status_is_its_worst_trials(tmp_path, trials, state, detail):
    from lrdecay_cli.analysis.listing import sweep_row

    row = sweep_row(make_sweep(tmp_path / "20261201-120000-s", trials))
    assert (row.state, row.status) == (state, detail)


def test_the_table_keeps_numbers_whole_at_80_columns(runs_dir, monkeypatch):
    """Text wraps and the least needed columns go; a number is never cut (no `0.9…`)."""
    from pathlib import Path

    from rich.console import Console

    from lrdecay_cli.analysis import listing
    from lrdecay_cli.output import console as report

    monkeypatch.chdir(runs_dir.parent)
    rows, _ = listing.list_runs(Path("runs"))
    for width in (80, 100, 200):
        out = io.StringIO()
        report.runs_table(rows, "title", Console(file=out, width=width, highlight=False))
        text = out.getvalue()
        assert "…" not in text and max(map(len, text.splitlines())) <= width
        for value in ("97.71%", "97.89%", "95.33%", "99.00%", "98.10%", "98.00%", "97.50%"):
            assert value in text, (width, value)
        assert "status" in text and "directory" in text and "val_acc" in text
    assert "when (UTC)" in text and "2026-12-01 09:00" in text and "t002 by val_acc" in text


def test_runs_of_an_empty_or_missing_directory_is_one_line(cli, tmp_path):
    out = cli("runs", tmp_path)
    assert out.exit_code == 0 and out.stdout == ""
    assert out.stderr.startswith(f"note: no runs, sweeps or studies in {tmp_path} yet;") and out.stderr.count("\n") == 1
    for where, message in ((tmp_path / "missing", "no such directory"), (tmp_path / "file", "not a directory")):
        (tmp_path / "file").write_text("x")
        out = cli("runs", where)
        assert out.exit_code == 2 and out.stdout == ""
        assert out.stderr.startswith(f"error: {where}: {message}; ") and out.stderr.count("\n") == 1


def test_runs_does_not_import_torch(runs_dir):
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from lrdecay_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['runs', {str(runs_dir)!r}]); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_run_written_before_a_field_existed_groups_with_an_equal_new_one(finished_sweep, tmp_path):
    """config.yaml of an older version lacks data.normalize and model.init: their defaults are what it ran."""
    import shutil

    import yaml

    from lrdecay_cli.analysis.grouping import group_runs
    from lrdecay_cli.rundir.read import collect

    old = shutil.copytree(finished_sweep / "t001", tmp_path / "old")
    config = yaml.safe_load((old / "config.yaml").read_text())
    del config["data"]["normalize"], config["model"]["init"]
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    runs = collect([finished_sweep / "t000", old])
    assert runs[1].config["data.normalize"] == "standard" and runs[1].config["model.init"] == "torch"
    assert len(group_runs(runs)) == 1


def without_loss_column(run) -> None:
    """Rewrite a run's lr.csv as lrdecay wrote it before it had the per-step loss: `step,lr`."""
    lines = (run / "lr.csv").read_text().splitlines()
    (run / "lr.csv").write_text("".join(",".join(line.split(",")[:2]) + "\n" for line in lines))


def test_a_run_written_before_lr_csv_had_the_loss_is_read_plotted_and_compared(cli, finished_sweep, tmp_path):
    old = shutil.copytree(finished_sweep / "t000", tmp_path / "old")
    without_loss_column(old)
    new, read_old = runs.load_run(finished_sweep / "t000"), runs.load_run(old)
    assert [(r["step"], r["lr"]) for r in read_old.lr] == [(r["step"], r["lr"]) for r in new.lr]
    assert {r["loss"] for r in read_old.lr} == {None} and not read_old.has_step_loss
    assert new.has_step_loss and all(isinstance(r["loss"], float) for r in new.lr)
    plotted = cli("plot", old, finished_sweep / "t001", "--out", tmp_path / "plots")
    assert plotted.exit_code == 0, plotted.output
    compared = cli("compare", old, finished_sweep / "t001", "--csv")
    assert compared.exit_code == 0, compared.output
    assert [r["n"] for r in csv.DictReader(io.StringIO(compared.stdout))] == ["2"]  # seeds 0 and 1, both counted
