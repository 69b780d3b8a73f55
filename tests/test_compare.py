"""`lrdecay compare` on a real finished sweep: its numbers against a computation written here from the
run directories, the CSV and Markdown forms, several run directories, left-out runs, errors, no torch."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import statistics
import subprocess
import sys

import pytest

from conftest import read_csv
from lrdecay_cli.analysis.stats import t_quantile, t_sf

LARGER = {"val_acc": True, "test_acc": True, "val_loss": False}


def expected_groups(sweep_dir, metric: str, target: float | None) -> list[dict]:
    """What compare must say, computed from results.csv and each trial's metrics.csv / summary.json."""
    by_method: dict[str, list[dict]] = {}
    for row in read_csv(sweep_dir / "results.csv"):
        assert row["status"] == "completed"
        epochs = read_csv(sweep_dir / row["trial"] / "metrics.csv")
        if metric == "test_acc":
            best = final = json.loads((sweep_dir / row["trial"] / "summary.json").read_text())["test_acc"]
            hit = None
        else:
            curve = [float(e[metric]) for e in epochs]
            best, final = (max if LARGER[metric] else min)(curve), curve[-1]
            hit = next((e for e in epochs if target is not None
                        and (float(e[metric]) >= target if LARGER[metric] else float(e[metric]) <= target)), None)
        if metric == "val_acc":
            assert best == float(row["best_val_acc"])
        reached = target is not None and (best >= target if LARGER[metric] else best <= target)
        by_method.setdefault(row["schedule.name"], []).append(
            {"best": best, "final": final, "reached": reached, "hit": hit, "seed": int(row["seed"])})
    groups = []
    for method, runs in by_method.items():
        best = [r["best"] for r in runs]
        mean, std = statistics.fmean(best), statistics.stdev(best)
        half = t_quantile(0.975, len(best) - 1) * std / math.sqrt(len(best))
        hits = [r["hit"] for r in runs if r["hit"] is not None]
        groups.append({"method": method, "values": best, "seeds": [r["seed"] for r in runs], "mean": mean, "std": std, "n": len(best),
                       "ci": (mean - half, mean + half), "final": statistics.fmean(r["final"] for r in runs),
                       "reached": sum(r["reached"] for r in runs),
                       "epochs": statistics.fmean(int(h["epoch"]) for h in hits) if hits else None,
                       "seconds": statistics.fmean(float(h["seconds"]) for h in hits) if hits else None})
    groups.sort(key=lambda g: -g["mean"] if LARGER[metric] else g["mean"])
    leader = dict(zip(groups[0]["seeds"], groups[0]["values"]))
    for g in groups[1:]:  # the paired t-test against the best group over the seeds both ran, written out
        assert sorted(g["seeds"]) == sorted(leader)  # every method ran the same seeds
        d = [value - leader[seed] for seed, value in zip(g["seeds"], g["values"])]
        sd = statistics.stdev(d)
        if sd == 0:  # the same difference on every seed: decided by it alone
            g["p"] = 1.0 if statistics.fmean(d) == 0 else 0.0
        else:
            g["p"] = 2 * t_sf(abs(statistics.fmean(d) / (sd / math.sqrt(len(d)))), len(d) - 1)
    ps = sorted((g["p"], i) for i, g in enumerate(groups[1:]))  # Holm, by hand: k-th smallest times (m - k + 1)
    running = 0.0
    for k, (p, i) in enumerate(ps):
        running = max(running, min(1.0, (len(ps) - k) * p))
        groups[1 + i]["p_holm"] = running
    for g in groups[1:]:
        g["verdict"] = "indistinguishable" if g["p_holm"] >= 0.05 else "worse"
    groups[0].update(p=None, p_holm=None, verdict="best")
    return groups


def median_best(sweep_dir) -> float:
    """A val_acc target that some runs reach and some may not."""
    return statistics.median(float(r["best_val_acc"]) for r in read_csv(sweep_dir / "results.csv"))


def num(text: str) -> float | None:
    return None if text == "" else float(text)


@pytest.mark.parametrize("metric", ["val_acc", "val_loss", "test_acc"])
def test_csv_numbers_equal_a_computation_from_the_run_directories(cli, finished_sweep, metric):
    target = {"val_acc": median_best(finished_sweep), "val_loss": None, "test_acc": 0.5}[metric]
    args = ["compare", finished_sweep, "--csv", "--metric", metric] + (["--target", repr(target)] if target else [])
    out = cli(*args)
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    expected = expected_groups(finished_sweep, metric, target)
    assert [r["schedule.name"] for r in rows] == [g["method"] for g in expected]
    assert [r["label"] for r in rows] == [g["method"] for g in expected]
    for row, g in zip(rows, expected):
        assert row["metric"] == metric and int(row["n"]) == g["n"] == 2 and int(row["runs"]) == 2
        assert row["left_out"] == ""
        assert float(row["best_mean"]) == pytest.approx(g["mean"], rel=1e-12)
        assert float(row["best_std"]) == pytest.approx(g["std"], rel=1e-12)
        assert (float(row["ci95_low"]), float(row["ci95_high"])) == pytest.approx(g["ci"], rel=1e-12)
        assert float(row["final_mean"]) == pytest.approx(g["final"], rel=1e-12)
        assert row["vs_best"] == g["verdict"]
        assert num(row["p_value"]) == (None if g["p"] is None else pytest.approx(g["p"], rel=1e-9))
        assert num(row["p_holm"]) == (None if g["p_holm"] is None else pytest.approx(g["p_holm"], rel=1e-9))
        assert row["test"] == ("" if g["p"] is None else "paired") and row["identical_to"] == ""
        if target is None:
            assert "reached" not in row and "epochs_to_target" not in row
        else:
            assert float(row["target"]) == target and int(row["reached"]) == g["reached"]
            assert num(row["epochs_to_target"]) == (None if g["epochs"] is None else pytest.approx(g["epochs"]))
            assert num(row["seconds_to_target"]) == (None if g["seconds"] is None else pytest.approx(g["seconds"]))
    if metric == "val_acc":
        assert sum(int(r["reached"]) for r in rows) >= 3  # the median target is reached by half the runs or more


def test_table_shows_the_same_numbers_best_first_and_says_what_they_mean(cli, finished_sweep):
    target = median_best(finished_sweep)
    out = cli("compare", finished_sweep, "--target", repr(target))
    assert out.exit_code == 0, out.output
    assert out.stderr == ""
    expected = expected_groups(finished_sweep, "val_acc", target)
    lines = out.stdout.splitlines()
    rows = [next(line for line in lines if f" {g['method']} " in line) for g in expected]
    assert rows == sorted(rows, key=lines.index)  # best first
    for line, g in zip(rows, expected):
        assert f"{100 * g['mean']:.2f} ± {100 * g['std']:.2f}" in line
        assert f"{100 * g['ci'][0]:.2f} – {100 * g['ci'][1]:.2f}" in line
        assert f"{g['reached']}/2" in line
        if g["verdict"] == "best":
            assert "best" in line and "p =" not in line
        else:
            assert ("≈ best" if g["verdict"] == "indistinguishable" else "worse") in line
    text = " ".join(out.stdout.split())
    assert "best val_acc (the max over its epochs)" in text and "paired where both ran the same seeds" in text
    assert "Holm-corrected" in text
    assert "α = 0.05" in text and "n = 2 per group" in text and "All 6 runs completed." in text


def test_markdown_is_a_clean_pipe_table_with_a_note(cli, finished_sweep):
    out = cli("compare", finished_sweep, "--markdown", "--target", "0.5")
    assert out.exit_code == 0, out.output
    table, note = out.stdout.rstrip("\n").split("\n\n")
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    cells = [line.split(" | ") for line in lines]
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines if line is not lines[1])
    assert re.fullmatch(r"\|(-{3,}:?\|)+", lines[1]) and lines[1].count("|") == lines[0].count("|")
    assert len({len(c) for c in cells[:1] + cells[2:]}) == 1
    assert lines[0].startswith("| schedule.name | best val_acc (%) | 95% CI | n |")
    assert "\x1b" not in out.stdout and "┃" not in out.stdout
    assert "\n" not in note and "paired" in note and "Holm" in note and "n = 2 per group" in note and "val_acc ≥ 50%" in note


def test_single_run_directories_are_labelled_by_their_differing_fields_and_not_tested(cli, finished_sweep):
    results = {(r["schedule.name"], r["seed"]): r["trial"] for r in read_csv(finished_sweep / "results.csv")}
    two = [finished_sweep / results[("constant", "0")], finished_sweep / results[("step", "0")]]
    out = cli("compare", *two, "--csv")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted(r["schedule.name"] for r in rows) == ["constant", "step"]
    assert [r["n"] for r in rows] == ["1", "1"] and [r["vs_best"] for r in rows] == ["best", "n/a"]
    assert all(r["best_std"] == r["ci95_low"] == r["p_value"] == "" for r in rows)
    for row in rows:
        curve = [float(e["val_acc"]) for e in read_csv(finished_sweep / results[(row["label"], "0")] / "metrics.csv")]
        assert float(row["best_mean"]) == max(curve)
    three = two + [finished_sweep / results[("constant", "1")]]  # constant n=2 against step n=1: no test
    out = cli("compare", *three)
    assert out.exit_code == 0, out.output
    assert "n/a" in out.stdout and "p =" not in out.stdout and "n per group:" in " ".join(out.stdout.split())


def test_runs_that_did_not_complete_are_counted_and_left_out(cli, finished_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished_sweep, sweep)
    results = {(r["schedule.name"], r["seed"]): r["trial"] for r in read_csv(sweep / "results.csv")}
    for key, status in ((("cosine", "1"), "diverged"), (("step", "0"), "failed"), (("step", "1"), "interrupted")):
        path = sweep / results[key] / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))
    out = cli("compare", sweep, "--csv")
    assert out.exit_code == 0, out.output
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(out.stdout))}
    assert list(rows)[-1] == "step"  # no completed run: last
    assert (rows["step"]["n"], rows["step"]["runs"], rows["step"]["best_mean"]) == ("0", "2", "")
    assert rows["step"]["left_out"] == "1 failed;1 interrupted" and rows["step"]["vs_best"] == "n/a"
    cosine_0 = max(float(e["val_acc"]) for e in read_csv(sweep / results[("cosine", "0")] / "metrics.csv"))
    assert (rows["cosine"]["n"], rows["cosine"]["left_out"]) == ("1", "1 diverged")
    assert float(rows["cosine"]["best_mean"]) == cosine_0 and rows["cosine"]["p_value"] == ""
    table = cli("compare", sweep)
    text = " ".join(table.stdout.split())
    assert "left out" in text and "1 diverged" in text
    assert "Left out of all statistics: 3 of 6 runs (1 diverged, 1 failed, 1 interrupted); only completed" in text


@pytest.mark.parametrize("args, where", [
    (["--metric", "train_acc"], "Invalid value for '--metric': 'train_acc' is not one of 'val_acc', 'val_loss', 'test_acc'"),
    (["--target", "1.5"], "--target"),
    (["--target", "0"], "--target"),
    (["--target", "nan"], "--target"),
    (["--metric", "val_loss", "--target", "0"], "--target"),
    (["--metric", "val_loss", "--target", "-0.1"], "--target"),
    (["--csv", "--markdown"], "--csv/--markdown"),
])
def test_bad_options_are_one_line_and_exit_2(cli, finished_sweep, args, where):
    out = cli("compare", finished_sweep, *args)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: {where}") and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr


def test_a_directory_that_is_not_a_run_is_one_line_and_exit_2(cli, finished_sweep, tmp_path):
    for args in ([tmp_path], [finished_sweep / "t000", tmp_path / "missing"], []):
        out = cli("compare", *args)
        assert out.exit_code == 2 and out.stdout == "", out.output
        assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_compare_does_not_import_torch(finished_sweep):
    code = ("import sys; from typer.testing import CliRunner; from lrdecay_cli.cli import app; "
            f"r = CliRunner().invoke(app, ['compare', {str(finished_sweep)!r}, '--markdown']); "
            "assert r.exit_code == 0, r.output; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_help_states_the_choices(cli):
    out = cli("compare", "--help")
    text = " ".join(out.stdout.split())
    assert out.exit_code == 0
    for phrase in ("max over epochs", "min over epochs", "Welch", "best metric", "Default: none", "(0, 1]"):
        assert phrase in text


def copy_run(source, runs_dir, dirname):
    """A trial's run directory copied as a single run of `runs_dir` (a rerun of the same spec and seed)."""
    shutil.copytree(source, runs_dir / dirname, ignore=shutil.ignore_patterns("checkpoint*.pt"))
    return runs_dir / dirname


def test_reruns_of_one_seed_count_once(cli, finished_sweep, tmp_path):
    """Three reruns of seed 0 are one seed, not n = 3: averaged into one value, no CI, no test, a note."""
    results = {(r["schedule.name"], r["seed"]): r["trial"] for r in read_csv(finished_sweep / "results.csv")}
    three = [copy_run(finished_sweep / results[("constant", "0")], tmp_path, f"rerun{i}") for i in range(3)]
    out = cli("compare", *three, "--csv")
    assert out.exit_code == 0, out.output
    (row,) = csv.DictReader(io.StringIO(out.stdout))
    assert (row["n"], row["completed"], row["runs"]) == ("1", "3", "3")
    assert row["best_std"] == row["ci95_low"] == "" and row["vs_best"] == "best"
    table = " ".join(cli("compare", *three).stdout.split())
    assert "1 (3 runs)" in table and "n = 1 per group" in table and "n/a" in table
    assert "n counts distinct seeds: reruns of a seed (tiny: 3 runs of seed 0) are averaged" in table


def test_a_rerun_seed_is_one_value_in_the_mean_and_the_test(cli, finished_sweep, tmp_path):
    """constant with seeds 0, 0, 1 against step with seeds 0, 1: the mean and Welch's test are over the
    seeds' values (the rerun of seed 0 averaged in), exactly as if it had run once."""
    results = {(r["schedule.name"], r["seed"]): r["trial"] for r in read_csv(finished_sweep / "results.csv")}
    targets = [finished_sweep / results[key] for key in (("constant", "0"), ("constant", "1"), ("step", "0"),
                                                          ("step", "1"))]
    once = list(csv.DictReader(io.StringIO(cli("compare", *targets, "--csv").stdout)))
    twice = cli("compare", *targets, copy_run(targets[0], tmp_path, "rerun"), "--csv")
    assert twice.exit_code == 0, twice.output
    twice = list(csv.DictReader(io.StringIO(twice.stdout)))
    for a, b in zip(once, twice):
        assert a["label"] == b["label"] and a["n"] == b["n"] == "2"
        for column in ("best_mean", "best_std", "ci95_low", "final_mean", "p_value", "vs_best"):
            assert a[column] == b[column], column
    assert [r["completed"] for r in twice if r["label"] == "constant"] == ["3"]


def test_a_runs_directory_is_its_single_runs_and_its_sweeps_trials(cli, finished_sweep, tmp_path):
    """`compare runs`, `compare runs/*` and `compare runs/sweeps` read what train and sweep wrote there;
    a note says what each runs directory expanded to and what it left out."""
    runs = tmp_path / "runs"
    shutil.copytree(finished_sweep, runs / "sweeps" / finished_sweep.name)
    (runs / "README.md").write_text("what is here\n")
    results = {(r["schedule.name"], r["seed"]): r["trial"] for r in read_csv(finished_sweep / "results.csv")}
    copy_run(finished_sweep / results[("cosine", "0")], runs, "20261201-120000-show")
    (runs / "20261201-130000-show-find-lr").mkdir()
    (runs / "20261201-130000-show-find-lr" / "summary.json").write_text('{"status": "completed"}')
    (runs / "sweeps" / "20261201-140000-empty").mkdir()
    (runs / "sweeps" / "20261201-140000-empty" / "sweep.yaml").write_text("name: empty\n")
    whole = cli("compare", runs, "--csv")
    assert whole.exit_code == 0, whole.output
    rows = {r["label"]: r for r in csv.DictReader(io.StringIO(whole.stdout))}
    assert sorted(rows) == ["constant", "cosine", "step"]
    assert (rows["cosine"]["n"], rows["cosine"]["completed"]) == ("2", "3")  # the single run reran seed 0
    assert (rows["step"]["n"], rows["step"]["completed"]) == ("2", "2")
    assert whole.stderr == (f"note: {runs}: 1 run and the 6 trials of 1 sweep; left out: 1 find-lr directory, "
                            f"1 sweep with no started trial\n")
    star = cli("compare", *sorted(runs.iterdir()), "--csv")
    assert star.exit_code == 0, star.output
    assert star.stdout == whole.stdout
    assert f"note: skipped {runs / 'README.md'}: a file, not a run, sweep or runs directory" in star.stderr
    assert f"note: skipped {runs / '20261201-130000-show-find-lr'}: an LR range test (find-lr)" in star.stderr
    sweeps = cli("compare", runs / "sweeps", "--csv")
    assert sweeps.exit_code == 0 and sweeps.stdout == cli("compare", finished_sweep, "--csv").stdout
    assert sweeps.stderr.startswith(f"note: {runs / 'sweeps'}: the 6 trials of 1 sweep;")


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "sweeps").mkdir(), "a runs directory with no started run or sweep in it"),
    (lambda d: [(d / "studies" / "20261201-120000-s").mkdir(parents=True),
                (d / "studies" / "20261201-120000-s" / "study.yaml").write_text("name: s\n")],
     "a runs directory with no started run or sweep in it"),
])
def test_a_runs_directory_without_runs_is_one_line_and_exit_2(cli, tmp_path, make, message):
    make(tmp_path)
    out = cli("compare", tmp_path)
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: {tmp_path}: {message}") and out.stderr.count("\n") == 1


def test_at_80_columns_no_number_is_cut_and_what_is_left_out_is_said(finished_sweep):
    """A narrow terminal (or a log file at 80) drops the least needed columns, never prints 0.9…"""
    import io

    from rich.console import Console

    from lrdecay_cli.analysis.compare import METRICS, compare, view
    from lrdecay_cli.output.console import compare_table
    from lrdecay_cli.rundir.read import collect

    shown = view(compare(collect([finished_sweep]), METRICS["val_acc"], target=0.5))
    for width in (80, 200):
        out = io.StringIO()
        compare_table(shown, Console(file=out, width=width, force_terminal=False))
        text = out.getvalue()
        assert "…" not in text
        table = text.split("\n\n")[0] if width == 80 else text
        for row in shown.rows:
            assert row[0] in table and row[1] in table  # the group and its metric, whole
        assert ("Left out to fit 80 columns:" in text) == (width == 80)
        assert max(len(line) for line in text.splitlines() if "┃" in line or "│" in line) <= width
