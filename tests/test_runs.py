"""Reading run and sweep directories back: typed rows, clear errors for damaged files, groups by seed,
labels from the spec fields that differ."""

import json
import shutil

import pytest

from conftest import read_csv
from lrdecay_cli import runs
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import METRICS_COLUMNS


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
    groups = runs.group_runs(runs.collect([finished_sweep]))
    assert [g.label for g in groups] == ["constant", "step", "cosine"]
    assert [g.seeds for g in groups] == [[0, 1], [0, 1], [0, 1]]
    assert groups[1].fields == {"schedule.name": "step"}  # step_size, gamma follow from the method


def test_labels_name_fields_that_vary_within_a_method(finished_sweep, tmp_path):
    found = runs.collect([finished_sweep / "t002", finished_sweep / "t003"])  # step, seeds 0 and 1
    found[1].config = {**found[1].config, "schedule.gamma": 0.5, "optimizer.lr": 0.05}
    assert runs.differing_fields(found) == ["optimizer.lr", "schedule.gamma"]
    assert [g.label for g in runs.group_runs(found)] == ["lr=0.1, gamma=0.3", "lr=0.05, gamma=0.5"]
    assert runs.label_of({"model.hidden": [64, 32], "model.dropout": 0.25, "train.dropout": 0.5}) \
        == "hidden=[64,32], model.dropout=0.25, train.dropout=0.5"


def test_identical_runs_are_labelled_by_their_name(finished_sweep):
    (group,) = runs.group_runs(runs.collect([finished_sweep / "t000"]))
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

    from lrdecay_cli.rundir import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.csv", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
