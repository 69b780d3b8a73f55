"""`lrdecay study`: the LR of each method x budget is chosen on validation alone, the final runs are
fresh seeds evaluated on the test set, and a resumed study re-trains nothing that finished."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from conftest import TINY, read_csv
from lrdecay_cli.analysis.stats import t_sf
from lrdecay_cli.config.spec_file import merge_sections

BASE = merge_sections(TINY, {"data": {"limit": 1200, "val_size": 200}, "train": {"eval_batch_size": 200}})
"""1,000 training images, 16 steps per epoch."""
STUDY = {
    "name": "mini",
    "base": BASE,
    "methods": [{"schedule": {"name": "constant"}}, {"schedule": {"name": "cosine", "interval": "step"}}],
    "lrs": [0.02, 0.3],
    "budgets": [1, 2],
    "seeds": 2,
}


def write_study(tmp_path: Path, changes: dict | None = None) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **(changes or {})}))
    return path


def study_dir(runs: Path) -> Path:
    (found,) = list((runs / "studies").iterdir())
    return found


def trial_records(stage: Path) -> list[tuple[dict, dict]]:
    """(config.yaml, summary.json) of every trial of a stage, read straight from disk."""
    return [(yaml.safe_load((t / "config.yaml").read_text()), json.loads((t / "summary.json").read_text()))
            for t in sorted(stage.glob("t[0-9][0-9][0-9]"))]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A whole study, run once by the CLI with the default (vectorized) executor."""
    from typer.testing import CliRunner

    from lrdecay_cli.cli import app

    tmp = tmp_path_factory.mktemp("study")
    result = CliRunner().invoke(app, ["study", str(write_study(tmp)), "--runs-dir", str(tmp / "runs"), "--quiet"])
    assert result.exit_code == 0, result.output
    return study_dir(tmp / "runs")


def test_each_chosen_lr_is_the_argmax_of_validation_over_the_tuning_runs(finished):
    """By default each LR is judged by the mean over the 2 tuning seeds of the last epoch's validation accuracy
    (final_val_acc: the model whose test accuracy the study reports), not by one seed's best epoch; over a grid
    of two LRs every choice is at an edge, so every cell is tuned again one step (x15) beyond it (tune-1/)."""
    assert len(trial_records(finished / "tune")) == 2 * 2 * 2 * 2  # methods x budgets x LRs x tuning seeds
    extended = trial_records(finished / "tune-1")
    assert len(extended) == 2 * 2 * 2  # methods x budgets x tuning seeds, one LR each
    assert {c["optimizer"]["lr"] for c, _ in extended} <= {0.001333, 4.5}  # 0.02 / 15, 0.3 * 15
    tuned = [record for stage in sorted(finished.glob("tune*")) for record in trial_records(stage)]
    assert {config["seed"] for config, _ in tuned} == {0, 1}
    values: dict[tuple, list[float]] = {}
    for config, summary in tuned:
        assert summary["status"] == "completed"
        key = (config["schedule"]["name"], config["train"]["epochs"], config["optimizer"]["lr"])
        values.setdefault(key, []).append(summary["final_val_acc"])
    best: dict[tuple, tuple[float, float]] = {}
    for (method, budget, lr), accs in sorted(values.items(), key=lambda item: item[0][2]):  # smaller LR first
        value = sum(accs) / len(accs)
        if (method, budget) not in best or value > best[method, budget][1]:
            best[method, budget] = (lr, value)
    chosen = {(r["method"], int(r["budget_epochs"])): float(r["lr"]) for r in read_csv(finished / "study.csv")}
    assert chosen == {key: lr for key, (lr, _) in best.items()}
    final = trial_records(finished / "final")
    assert len(final) == 2 * 2 * 2  # methods x budgets x final seeds
    for config, summary in final:
        assert config["optimizer"]["lr"] == chosen[config["schedule"]["name"], config["train"]["epochs"]]


def test_no_test_metric_exists_before_the_final_stage(finished):
    """The tuning runs never evaluate on the test set, so nothing there could leak into the choice."""
    for config, summary in trial_records(finished / "tune"):
        assert config["train"]["test_eval"] is False
        assert summary["test_acc"] is None and summary["test_loss"] is None
    tuning = read_csv(finished / "tuning.csv")
    assert not any("test" in column for column in tuning[0])
    final_seeds = {config["seed"] for config, _ in trial_records(finished / "final")}
    assert final_seeds == {2, 3} and not final_seeds & {c["seed"] for c, _ in trial_records(finished / "tune")}
    assert all(summary["test_acc"] is not None for _, summary in trial_records(finished / "final"))


def test_study_csv_summarizes_the_final_runs_and_ranks_each_budget(finished):
    rows = read_csv(finished / "study.csv")
    assert list(rows[0]) == ["method", "budget_epochs", "lr", "tuned", "tune_metric", "test_acc_mean", "test_acc_std",
                             "n", "ci_low", "ci_high", "rank", "test", "p_value", "p_holm", "diff", "diff_ci_low",
                             "diff_ci_high", "identical_to"]
    final = trial_records(finished / "final")
    for budget in (1, 2):  # the paired t-test against the best, by hand: both methods ran final seeds 2 and 3
        at = {r["method"]: r for r in rows if int(r["budget_epochs"]) == budget}
        acc = {(c["schedule"]["name"], c["seed"]): s["test_acc"] for c, s in final if c["train"]["epochs"] == budget}
        best, other = sorted(at, key=lambda m: -float(at[m]["test_acc_mean"]))
        d = [acc[other, seed] - acc[best, seed] for seed in (2, 3)]
        assert at[best]["test"] == at[best]["p_value"] == at[best]["diff"] == ""
        if at[other]["identical_to"] or d[0] == d[1]:  # no spread in the differences: p is 0 or 1
            continue
        t = (sum(d) / 2) / (abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2))
        p = 2 * t_sf(abs(t), 1)
        assert at[other]["test"] == "paired" and math.isclose(float(at[other]["p_value"]), p, rel_tol=1e-9)
        assert at[other]["p_holm"] == at[other]["p_value"]  # one comparison per budget: nothing to correct
        assert math.isclose(float(at[other]["diff"]), sum(d) / 2, rel_tol=1e-9)
        assert float(at[other]["diff_ci_low"]) <= float(at[other]["diff"]) <= float(at[other]["diff_ci_high"])
    for row in rows:
        accs = [s["test_acc"] for c, s in final
                if c["schedule"]["name"] == row["method"] and c["train"]["epochs"] == int(row["budget_epochs"])]
        assert int(row["n"]) == len(accs) == 2
        assert math.isclose(float(row["test_acc_mean"]), sum(accs) / 2, rel_tol=1e-12)
        assert float(row["ci_low"]) <= float(row["test_acc_mean"]) <= float(row["ci_high"])
        assert 0 < float(row["test_acc_mean"]) <= 1  # a fraction in this file
    for budget in ("1", "2"):
        at = sorted((r for r in rows if r["budget_epochs"] == budget), key=lambda r: -float(r["test_acc_mean"]))
        assert [int(r["rank"]) for r in at] == [1, 2] or at[0]["test_acc_mean"] == at[1]["test_acc_mean"]
    report = (finished / "report.md").read_text()
    assert "## Verdict" in report and "Holm-corrected" in report and "paired t-test" in report
    for name in ("test_acc_vs_budget", "average_rank", "lr_sensitivity"):
        assert (finished / f"{name}.png").stat().st_size > 10_000


def test_the_stages_are_sweeps_that_compare_and_plot_read(finished, cli, tmp_path):
    assert cli("compare", finished / "final", "--metric", "test_acc").exit_code == 0
    result = cli("plot", finished / "tune", "--out", tmp_path / "figs")
    assert result.exit_code == 0, result.output


def stop_stage_once(monkeypatch, stage: str, after: int, record) -> list:
    """Make the study's stage `stage` train its first `after` trials and then stop, as Ctrl-C would (once); return
    the list that collects `record(sweep_dir, trial)` for every trial each stage was asked to train."""
    from lrdecay_cli.experiments import executors

    real_run, trained, stopped = executors.run, [], []

    def stopping(name, trials, sweep_dir, *args, **kwargs):
        trained.extend(record(sweep_dir, t) for t in trials)
        if sweep_dir.name == stage and not stopped:
            stopped.append(True)
            real_run(name, trials[:after], sweep_dir, *args, **kwargs)
            raise KeyboardInterrupt
        return real_run(name, trials, sweep_dir, *args, **kwargs)

    monkeypatch.setattr(executors, "run", stopping)
    return trained


def test_a_resumed_study_retrains_nothing_that_finished(tmp_path, monkeypatch, cli):
    """The final stage stops after two of its trials (as Ctrl-C would); --resume trains only the rest,
    sequentially this time, and leaves the finished trials' files as they were."""
    trained = stop_stage_once(monkeypatch, "final", after=2, record=lambda sweep_dir, t: (sweep_dir.name, t.dirname))
    runs = tmp_path / "runs"
    result = cli("study", write_study(tmp_path), "--runs-dir", runs, "--quiet", "--executor", "sequential")
    assert result.exit_code == 130, result.output
    assert "continue with: lrdecay study --resume" in result.stderr
    found = study_dir(runs)
    assert not (found / "report.md").exists()
    done = {p: p.read_bytes() for p in [*(found / "tune").rglob("*.json"), *(found / "final" / "t000").rglob("*"),
                                        *(found / "final" / "t001").rglob("*")] if p.is_file()}
    trained.clear()
    result = cli("study", "--resume", found, "--quiet", "--executor", "sequential")
    assert result.exit_code == 0, result.output
    assert trained == [("final", f"t{i:03d}") for i in range(2, 8)]  # no tuning trial, no finished final one
    assert {p: p.read_bytes() for p in done} == done
    assert len(read_csv(found / "study.csv")) == 4 and (found / "report.md").is_file()


def test_dry_run_shows_each_curve_at_points_of_each_budget_and_writes_nothing(cli, tmp_path):
    result = cli("study", write_study(tmp_path), "--runs-dir", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "cosine" in line and "2 ep" in line]
    cosine_2 = [cell.strip() for cell in row.split("│")[4:8]]
    steps = 32  # 2 epochs of 16 steps: 50% is step 16 (round(0.5 * 31)), 90% step 28, 100% the last, 31
    assert cosine_2 == [f"{0.5 * (1 + math.cos(math.pi * s / steps)):.4g}" for s in (0, 16, 28, 31)]
    assert "tuning: 16 trials" in result.stdout and "final: 8 trials" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_dry_run_warns_of_a_curve_that_never_moves_in_a_budget(cli, tmp_path):
    """linear counts epochs by default: over a 1-epoch budget it is flat (the shared flat-run check says so);
    constant is flat by design and gets no warning."""
    path = write_study(tmp_path, {"methods": [{"schedule": {"name": "constant"}}, {"schedule": {"name": "linear"}}]})
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: linear at 1 epochs: the schedule never changes")


def test_methods_whose_final_runs_are_the_same_are_one_result_tested_once(tmp_path, cli):
    """plateau with a patience longer than the run never cuts: its runs are constant's, seed by seed. The study
    says so (identical_to, the report) and tests it once, instead of counting it as a second method."""
    path = write_study(tmp_path, {"methods": [{"schedule": {"name": "constant"}},
                                              {"schedule": {"name": "plateau", "patience": 50}},
                                              {"schedule": {"name": "cosine", "interval": "step"}}],
                                  "budgets": [1], "lrs": [0.05]})
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    found = study_dir(tmp_path / "runs")
    rows = {r["method"]: r for r in read_csv(found / "study.csv")}
    assert rows["plateau"]["identical_to"] == "constant" and rows["constant"]["identical_to"] == ""
    assert rows["plateau"]["test_acc_mean"] == rows["constant"]["test_acc_mean"]
    assert rows["plateau"]["p_holm"] == rows["constant"]["p_holm"]  # the same test, shared
    if rows["constant"]["rank"] != "1":  # tested against cosine, once: two tests in the family, not three
        assert rows["cosine"]["identical_to"] == "" and rows["constant"]["test"] == "paired"
    report = (found / "report.md").read_text()
    assert "plateau trained the very same runs as constant" in report


EDGY = {"methods": [{"schedule": {"name": "constant"}}], "budgets": [1], "lrs": [0.005, 0.015], "seeds": 1}
"""One cell whose larger LR wins clearly (val acc about 0.6 at 0.005, 0.75 at 0.015, 0.79 at 0.045)."""


def test_an_lr_chosen_at_the_grid_edge_is_tuned_one_step_beyond_it_and_a_resume_retrains_nothing(
        tmp_path, monkeypatch, cli):
    """0.015 wins, so round 1 (tune-1/) tries 0.045 (one step of x3); the study stops in that round after one
    of its two trials (as Ctrl-C would), and --resume plans the same round from study.yaml and tune/, trains
    only its other trial and what follows, and ends with a chosen LR that is no edge unless the bound (2) holds
    it there."""
    trained = stop_stage_once(monkeypatch, "tune-1", after=1,
                              record=lambda sweep_dir, t: (sweep_dir.name, t.dirname, t.spec.optimizer.lr))
    runs = tmp_path / "runs"
    result = cli("study", write_study(tmp_path, EDGY), "--runs-dir", runs, "--quiet", "--executor", "sequential")
    assert result.exit_code == 130, result.output
    assert "in its tune-1 stage" in result.stderr
    assert [(stage, lr) for stage, _, lr in trained] == [("tune", 0.005)] * 2 + [("tune", 0.015)] * 2 + \
        [("tune-1", 0.045)] * 2
    found = study_dir(runs)
    done = {p: p.read_bytes() for p in [*(found / "tune").rglob("*.json"), *(found / "tune-1" / "t000").rglob("*")]
            if p.is_file()}
    trained.clear()
    result = cli("study", "--resume", found, "--quiet", "--executor", "sequential")
    assert result.exit_code == 0, result.output
    assert trained[0] == ("tune-1", "t001", 0.045)
    assert {stage for stage, _, _ in trained} <= {"tune-1", "tune-2", "final"}
    assert {p: p.read_bytes() for p in done} == done
    rows = read_csv(found / "tuning.csv")
    assert list(rows[0]) == ["method", "budget_epochs", "lr", "tuned", "round", "metric", "value", "n", "chosen"]
    by_round = [(int(r["round"]), float(r["lr"])) for r in rows]
    assert by_round[:3] == [(0, 0.005), (0, 0.015), (1, 0.045)]
    assert by_round[3:] in ([], [(2, 0.135)])  # a second round only if 0.045 won the first
    (chosen,) = [float(r["lr"]) for r in rows if r["chosen"] == "True"]
    tried = sorted(lr for _, lr in by_round)
    assert chosen == float(read_csv(found / "study.csv")[0]["lr"])
    assert tried[0] < chosen < tried[-1] or len(by_round) == 4  # inside the grid, or the bound of 2 reached
    final_lrs = {config["optimizer"]["lr"] for config, _ in trial_records(found / "final")}
    assert final_lrs == {chosen}
    assert ("Still at the edge" in (found / "report.md").read_text()) == (chosen == tried[-1])


def test_the_extensions_stop_at_max_extensions_and_the_report_names_what_is_still_at_an_edge(tmp_path, cli):
    """0.001 < 0.002 < 0.004 < ... all improve over 16 steps: with max_extensions 1 the grid grows once, to
    0.004, the choice stays at its edge, and report.md says so; --dry-run said extensions may follow."""
    path = write_study(tmp_path, {**EDGY, "lrs": [0.001, 0.002], "max_extensions": 1, "tune_seeds": 1})
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--dry-run")
    said = " ".join(result.stdout.split())
    assert "extension rounds may follow" in said and "x2 above" in said and "up to 1 time per side" in said
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    found = study_dir(tmp_path / "runs")
    assert [(r["round"], r["lr"], r["chosen"]) for r in read_csv(found / "tuning.csv")] == [
        ("0", "0.001", "False"), ("0", "0.002", "False"), ("1", "0.004", "True")]
    assert not (found / "tune-2").exists()
    report = (found / "report.md").read_text()
    assert ("Still at the edge of the LR grid after 1 extension per side (widen `lrs` to be sure the best LR is "
            "inside it): constant at 1 epoch chose 0.004, the largest it was tuned at.") in report


def test_an_edge_extends_by_the_step_between_the_two_lrs_at_that_edge_up_to_the_bound_per_side():
    """Below the smallest by the ratio of the two smallest, above the largest by that of the two largest,
    rounded as a log range's LRs are; a cell chosen inside, or extended max_extensions times, stays."""
    from lrdecay_cli.config.study_file import StudySpec
    from lrdecay_cli.experiments.study import Cell, Choice, Study, extensions

    spec = StudySpec.model_validate({**STUDY, "lrs": [0.01, 0.03, 0.1, 1.0], "max_extensions": 1})
    study = Study(spec, BASE, "test")
    cells = [Cell(0, 1), Cell(1, 1), Cell(0, 2), Cell(1, 2)]
    tuning = [{"cell": cell, "setting": (), "lr": lr} for cell in cells for lr in spec.lr_list()]
    tuning.append({"cell": cells[3], "setting": (), "lr": 10.0})  # cells[3] went one step up already
    choices = [Choice(cells[0], 0.01, 0.5), Choice(cells[1], 1.0, 0.5), Choice(cells[2], 0.1, 0.5),
               Choice(cells[3], 10.0, 0.5)]
    assert extensions(study, tuning, choices) == [(choices[0], 0.003333), (choices[1], 10.0)]


def test_a_method_may_bring_its_own_optimizer_and_trains_it_at_the_tuned_lrs(tmp_path, cli):
    """`optimizer: {name: adam}` beside the schedule: that method trains Adam (its defaults, none of the base's
    SGD momentum) at every LR the study tunes, extensions included, and in its final runs; the other method keeps
    the base's SGD. Its default name says the optimizer: `constant (adam)`."""
    path = write_study(tmp_path, {**EDGY, "lrs": [0.003, 0.03], "tune_seeds": 1, "max_extensions": 1,
                                  "methods": [{"schedule": {"name": "constant"}},
                                              {"schedule": {"name": "constant"}, "optimizer": {"name": "adam"}}]})
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    found = study_dir(tmp_path / "runs")
    tuning = read_csv(found / "tuning.csv")
    assert {r["method"] for r in tuning} == {"constant", "constant (adam)"}
    tuned = {name: {float(r["lr"]) for r in tuning if r["method"] == name} for name in ("constant", "constant (adam)")}
    records = [record for stage in sorted(found.glob("tune*")) for record in trial_records(stage)]
    assert len(records) == len(tuning)  # one tuning seed: a trial per row
    for optimizer, method in (("sgd", "constant"), ("adam", "constant (adam)")):
        mine = [config["optimizer"] for config, _ in records if config["optimizer"]["name"] == optimizer]
        assert {o["lr"] for o in mine} == tuned[method]
        assert all(("momentum" in o) == (optimizer == "sgd") for o in mine)  # sgd's 0.9 never reaches adam
    chosen = {r["method"]: float(r["lr"]) for r in read_csv(found / "study.csv")}
    final = {(c["optimizer"]["name"], c["optimizer"]["lr"]) for c, _ in trial_records(found / "final")}
    assert final == {("sgd", chosen["constant"]), ("adam", chosen["constant (adam)"])}


def test_a_method_tunes_its_own_parameters_jointly_with_the_lr(tmp_path, cli):
    """`tune: {schedule.gamma: [0.1, 0.5]}`: every gamma x LR on the same tuning seeds, the best pair chosen
    (tuning.csv's `tuned` says which gamma each row had), extensions at the chosen gamma, and the final runs
    at the chosen gamma and LR."""
    step = {"name": "step", "step_fraction": 0.5, "interval": "step"}
    path = write_study(tmp_path, {**EDGY, "lrs": [0.01, 0.1], "tune_seeds": 1, "max_extensions": 1,
                                  "methods": [{"schedule": step, "tune": {"schedule.gamma": [0.1, 0.5]}}]})
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--dry-run")
    assert "tuning: 4 trials (1 methods in 2 settings" in " ".join(result.stdout.split())
    for gamma in (0.1, 0.5):  # each gamma's curve: halfway through the run (step 8 of 16) the LR drops to gamma
        (row,) = [line for line in result.stdout.splitlines() if f"gamma={gamma}]" in line]
        assert [cell.strip() for cell in row.split("│")[4:8]] == ["1", f"{gamma:g}", f"{gamma:g}", f"{gamma:g}"]
    result = cli("study", path, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    found = study_dir(tmp_path / "runs")
    rows = read_csv(found / "tuning.csv")
    grid = [(r["tuned"], float(r["lr"])) for r in rows if r["round"] == "0"]
    assert grid == [("schedule.gamma=0.1", 0.01), ("schedule.gamma=0.1", 0.1), ("schedule.gamma=0.5", 0.01),
                    ("schedule.gamma=0.5", 0.1)]
    records = {(c["schedule"]["gamma"], c["optimizer"]["lr"]): s["final_val_acc"]
               for stage in found.glob("tune*") for c, s in trial_records(stage)}
    (best,) = [r for r in rows if r["chosen"] == "True"]
    assert float(best["value"]) == max(records.values())
    gamma = float(best["tuned"].partition("=")[2])
    assert records[gamma, float(best["lr"])] == max(records.values())
    extended = [r for r in rows if r["round"] == "1"]  # one step beyond the edge, at the chosen gamma
    assert len(extended) <= 1 and all(float(r["lr"]) in (0.001, 1.0) and r["tuned"] == best["tuned"]
                                      for r in extended)
    (study_row,) = read_csv(found / "study.csv")
    assert (study_row["tuned"], study_row["lr"]) == (best["tuned"], best["lr"])
    assert {(c["schedule"]["gamma"], c["optimizer"]["lr"]) for c, _ in trial_records(found / "final")} == \
        {(gamma, float(best["lr"]))}


def test_a_study_written_before_extensions_resumes_as_it_was_planned(tmp_path, cli):
    """Its study.yaml has no max_extensions: --resume adds no extension round (which would change its choices
    and no longer match its final/), and retrains nothing."""
    path = write_study(tmp_path, {**EDGY, "lrs": [0.001, 0.002], "max_extensions": 0, "tune_seeds": 1})
    assert cli("study", path, "--runs-dir", tmp_path / "runs", "--quiet").exit_code == 0
    found = study_dir(tmp_path / "runs")
    written = yaml.safe_load((found / "study.yaml").read_text())
    assert written.pop("max_extensions") == 0
    (found / "study.yaml").write_text(yaml.safe_dump(written))
    before = (found / "final" / "t000" / "summary.json").read_bytes()
    result = cli("study", "--resume", found, "--quiet")
    assert result.exit_code == 0, result.output
    assert not (found / "tune-1").exists() and (found / "final" / "t000" / "summary.json").read_bytes() == before
    assert "Still at the edge of the LR grid (widen" in (found / "report.md").read_text()


def test_the_verdict_follows_the_holm_corrected_p_not_the_raw_one():
    """Three methods below the best at raw p = 0.02, 0.03, 0.04: Holm makes them 0.06, 0.06, 0.06, so none is
    significantly lower; one at raw p = 0.001 (Holm 0.004) is."""
    from types import SimpleNamespace

    from lrdecay_cli.output.study_report import verdict

    study = SimpleNamespace(spec=SimpleNamespace(budgets=[1], seeds=5))
    rows = [{"method": "best", "budget_epochs": 1, "rank": 1, "test_acc_mean": 0.97, "n": 5, "p_holm": None}]
    rows += [{"method": name, "budget_epochs": 1, "rank": rank, "test_acc_mean": 0.96, "n": 5, "p_value": p,
              "p_holm": holm} for name, rank, p, holm in [("a", 2, 0.02, 0.06), ("b", 3, 0.03, 0.06),
                                                          ("c", 4, 0.04, 0.06), ("d", 5, 0.001, 0.004)]]
    (budget, *_) = verdict(study, rows)
    assert "a, b, c are not significantly different from it" in budget and "d is significantly lower" in budget
