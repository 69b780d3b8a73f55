"""Studies: which decay method wins, fairly, at every budget (Schmidt et al. 2021: tune each method with the same
budget, then compare over seeds; Li et al. 2020 and Chen et al. 2021: the answer depends on the budget).

    <runs dir>/studies/<UTC time>-<name>/
      study.yaml     the resolved study (base inlined, LRs and seeds listed): --resume re-plans from it
      tune/          a sweep: every method x budget x initial LR, on the tuning seeds, without a test evaluation
      tune-1/ ...    a sweep per extension round: each method x budget whose chosen LR was the smallest or largest
                     it was tuned at, one grid step beyond it (at most max_extensions per side)
      tuning.csv     one row per method x budget x LR: its round, its validation metric, and which LR was chosen
      final/         a sweep: every method x budget at its chosen LR, on other seeds, evaluated on the test set
      study.csv      one row per method x budget: the chosen LR, test accuracy over seeds, CI, rank (per budget)
      report.md, *.png   the tables, figures and a verdict (output/study_report.py)

The stages are ordinary sweep directories, so `plot`, `compare` and `sweep --resume` work on them. The
tuning runs never evaluate on the test set (`train.test_eval: false`): it plays no part in choosing. A budget
is the run's length, so a method whose horizon defaults to the run (cosine, wsd, ...) is rebuilt for each.
Round r's extensions are planned from the rounds before it, all finished, so --resume plans each again exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lrdecay_cli.analysis.compare import METRICS, Comparison, average_ranks, compare_by
from lrdecay_cli.config.choices import CompareMetric, SelectionMetric
from lrdecay_cli.config.spec_file import from_data, merge_sections
from lrdecay_cli.config.study_file import (Setting, StudySpec, describe, load as load_file, nested, parse,
                                           resolved_yaml, training_key)
from lrdecay_cli.config.sweep_file import SweepSpec, Trial
from lrdecay_cli.config.yaml_io import read_yaml_file
from lrdecay_cli.errors import UserError
from lrdecay_cli.experiments import sweep as sweeps
from lrdecay_cli.rundir import layout
from lrdecay_cli.rundir.csvfile import to_csv
from lrdecay_cli.rundir.fs import check_writable, locked, make_unique_dir, write_atomic
from lrdecay_cli.rundir.layout import Status, utc_stamp
from lrdecay_cli.rundir.read import load_run, read_summary, summary_number
from lrdecay_cli.schedules import lr_schedule
from lrdecay_cli.schedules.preview import flat_run_warning


@dataclass(frozen=True)
class Cell:
    """One method at one budget: a row of study.csv."""

    method: int
    budget: int  # epochs


@dataclass
class Choice:
    """The LR tuning chose for a cell (None where every LR diverged or failed), its validation metric, and the
    setting of the method's tuned parameters it was chosen with."""

    cell: Cell
    lr: float | None
    metric: float | None
    setting: Setting = ()


@dataclass
class Study:
    """A study: its spec, base spec (raw data), where it came from, and its directory (None until `create`)."""

    spec: StudySpec
    base: dict
    source: str
    path: Path | None = None

    def cells(self) -> list[Cell]:
        """Budget-major: all methods of one budget side by side (they stack: one train section)."""
        return [Cell(m, b) for b in self.spec.budgets for m in range(len(self.spec.methods))]

    @cached_property
    def by_training(self) -> dict[tuple, tuple[Cell, Setting]]:
        """`training_key` -> its cell and setting: how a trial is known for what it trains."""
        return {training_key(self.spec_of(c, s)): (c, s) for c in self.cells() for s in self.settings(c)}

    def settings(self, cell: Cell) -> list[Setting]:
        return self.spec.methods[cell.method].settings()

    def spec_of(self, cell: Cell, setting: Setting | None = None):
        """The cell's spec at the base's LR (validated; the schedule as it trains), in `setting` (default: the
        first of its tuned parameters' combinations)."""
        setting = self.settings(cell)[0] if setting is None else setting
        return from_data(merge_sections(self.base, self._variant(cell, setting)), self.source)

    def label(self, cell: Cell) -> str:
        return self.spec.methods[cell.method].name

    def _variant(self, cell: Cell, setting: Setting, lr: float | None = None) -> dict:
        variant = {**self.spec.methods[cell.method].sections(), "train": {"epochs": cell.budget}}
        return merge_sections(variant, merge_sections(nested(setting), {"optimizer": {"lr": lr}} if lr else {}))

    def tune_plan(self) -> sweeps.Plan:
        """Every cell x LR on the tuning seeds; the tuning runs skip the test evaluation."""
        sweep = SweepSpec(name=f"{self.spec.name}-tune",
                          variants=[self._variant(c, s) for c in self.cells() for s in self.settings(c)],
                          grid={"optimizer.lr": self.spec.lr_list()}, seeds=self.spec.tune_seed_list(),
                          metric=self.spec.metric.compare_metric)
        base = merge_sections(self.base, {"train": {"test_eval": False}})
        return sweeps.plan_of(sweep, base, f"{self.source} (tuning)")

    def extension_plan(self, round_: int, tuning: list[dict], choices: list[Choice]) -> sweeps.Plan | None:
        """Tuning round `round_` (1, 2, ...): each cell whose chosen LR is at an edge of the LRs it was tuned at,
        one grid step beyond it, on the tuning seeds; None when no cell has an edge left to extend."""
        variants = [self._variant(c.cell, c.setting, lr) for c, lr in extensions(self, tuning, choices)]
        if not variants:
            return None
        sweep = SweepSpec(name=f"{self.spec.name}-{stage_name(round_)}", variants=variants,
                          seeds=self.spec.tune_seed_list(), metric=self.spec.metric.compare_metric)
        base = merge_sections(self.base, {"train": {"test_eval": False}})
        return sweeps.plan_of(sweep, base, f"{self.source} (tuning round {round_})")

    def preview(self) -> list[DryRunRow]:
        """Each method's curve (in each setting of its tuned schedule parameters) at each budget at a few points
        of the run; plateau's as it starts, before any cut."""
        out = []
        for cell in self.cells():
            seen = []
            for setting in self.settings(cell):
                curve = tuple((k, v) for k, v in setting if k.startswith("schedule."))
                if curve in seen:  # an optimizer setting does not change the curve
                    continue
                seen.append(curve)
                spec = self.spec_of(cell, setting)
                steps = spec.steps_per_epoch() * cell.budget
                schedule = lr_schedule(spec.schedule, 1.0, spec.steps_per_epoch(), cell.budget)
                factors = [schedule(round(at * (steps - 1))) for at in SHOWN_AT]
                label = self.label(cell) + (f" [{describe(curve)}]" if curve else "")
                out.append(DryRunRow(label, cell.budget, steps, factors, schedule.metric_driven,
                                     flat_run_warning(spec), SHOWN_AT))
        return out

    def final_plan(self, choices: list[Choice]) -> sweeps.Plan:
        """Every cell that has a chosen LR, at that LR, on the final seeds, with the test evaluation."""
        variants = [self._variant(c.cell, c.setting, c.lr) for c in choices if c.lr is not None]
        sweep = SweepSpec(name=f"{self.spec.name}-final", variants=variants, seeds=self.spec.final_seed_list(),
                          metric="test_acc")
        base = merge_sections(self.base, {"train": {"test_eval": True}})
        return sweeps.plan_of(sweep, base, f"{self.source} (final)")


def load(path: Path) -> Study:
    return Study(*load_file(path), str(path))


def create(study: Study, runs_dir: Path) -> Path:
    """Make `<runs_dir>/studies/<UTC time>-<name>/` with its study.yaml, where the disk has room for both stages."""
    from lrdecay_cli.training.loop import run_bytes  # torch: here, not for a --dry-run

    tune = study.tune_plan()
    per_seed = sum(run_bytes(t.spec) for t in tune.trials) / len(study.spec.tune_seed_list())
    check_writable(runs_dir, int(per_seed * (study.spec.tune_seeds + study.spec.seeds / len(study.spec.lr_list()))))
    study.path = make_unique_dir(runs_dir / "studies", f"{utc_stamp()}-{study.spec.name}")
    write_atomic(study.path / layout.STUDY, resolved_yaml(study.spec, study.base))
    return study.path


def reopen(study_dir: Path) -> Study:
    """A study directory's study, for --resume; a study.yaml without max_extensions was written before studies
    extended their grids, and resumes as it was planned: without extensions."""
    path = study_dir / layout.STUDY
    if not path.is_file():
        raise UserError("not a study directory (no study.yaml)", where=str(study_dir),
                        fix="pass a directory under <runs>/studies/")
    raw = read_yaml_file(path)
    if isinstance(raw, dict) and "max_extensions" not in raw:
        raw = {**raw, "max_extensions": 0}
    return Study(*parse(raw, str(path), study_dir), str(path), study_dir)


def stage(study: Study, name: str, plan: sweeps.Plan) -> sweeps.Plan:
    """The stage's sweep directory (`tune/`, `tune-1/`, ..., `final/`): made on first use, else reopened, and
    then it must hold the plan's own trials (a study.yaml edited since would resume as what it is not)."""
    at = study.path / name
    if not (at / layout.SWEEP).is_file():
        if at.exists():  # made, but its sweep.yaml never written: nothing in it ran
            at.rmdir()
        sweeps.create(plan, study.path, at=at)
        return plan
    opened = sweeps.reopen(at)
    if [t.spec for t in opened.trials] != [t.spec for t in plan.trials]:
        raise UserError(f"{name}/ holds other trials than study.yaml plans", where=str(at),
                        fix="restore study.yaml as the study wrote it, or start a new study")
    return opened


def stage_name(round_: int) -> str:
    """Round 0 tunes the grid (tune/); round r its extensions (tune-r/)."""
    return "tune" if round_ == 0 else f"tune-{round_}"


def one_step(lr: float, ratio: float) -> float:
    """lr x ratio, rounded to 4 significant digits as the log range's LRs are (unrounded where that would not move)."""
    rounded = float(f"{lr * ratio:.4g}")
    return rounded if (rounded > lr) == (ratio > 1) and rounded != lr else lr * ratio


def tried_lrs(tuning: list[dict], choice: Choice) -> list[float]:
    """Every LR the choice's cell was tuned at in its setting, over all rounds, smallest first."""
    return sorted({row["lr"] for row in tuning if row["cell"] == choice.cell and row["setting"] == choice.setting})


def at_edge(tuning: list[dict], choice: Choice) -> str | None:
    """'smallest' or 'largest' where the chosen LR is an end of the LRs its cell was tuned at in its setting."""
    tried = tried_lrs(tuning, choice)
    if choice.lr is None or not tried:
        return None
    return "smallest" if choice.lr == tried[0] else "largest" if choice.lr == tried[-1] else None


def extensions(study: Study, tuning: list[dict], choices: list[Choice]) -> list[tuple[Choice, float]]:
    """(choice, LR one grid step beyond it) for each cell chosen at an edge (in its chosen setting) that has not
    yet been extended max_extensions times on that side."""
    steps, lrs = study.spec.edge_steps(), study.spec.lr_list()
    if steps is None:
        return []
    out = []
    for choice in choices:
        side, tried = at_edge(tuning, choice), tried_lrs(tuning, choice)
        if side == "smallest" and sum(lr < lrs[0] for lr in tried) < study.spec.max_extensions:
            out.append((choice, one_step(choice.lr, 1 / steps[0])))
        elif side == "largest" and sum(lr > lrs[-1] for lr in tried) < study.spec.max_extensions:
            out.append((choice, one_step(choice.lr, steps[1])))
    return out


def metric_of(summary: dict | None, metric: SelectionMetric) -> float | None:
    """A tuning run's validation metric; None unless it completed (a diverged LR is never chosen)."""
    return summary_number(summary.get(metric.value)) if summary and summary.get("status") == Status.COMPLETED else None


def tuning_rows(study: Study, plans: list[sweeps.Plan]) -> list[dict]:
    """One row per cell x LR, round by round (`plans[r]` is round r's stage): the selection metric's mean over the
    tuning seeds (None where any did not complete)."""
    per_lr = {}
    for round_, plan in enumerate(plans):
        for trial in plan.trials:
            key = (*placed(study, trial), trial.spec.optimizer.lr, round_)
            per_lr.setdefault(key, []).append(metric_of(read_summary(plan.path / trial.dirname), study.spec.metric))
    rows = []
    for (cell, setting, lr, round_), values in per_lr.items():
        complete = [v for v in values if v is not None]
        rows.append({"method": study.label(cell), "budget_epochs": cell.budget, "lr": lr, "tuned": describe(setting),
                     "round": round_, "metric": study.spec.metric.value,
                     "value": sum(complete) / len(complete) if complete and len(complete) == len(values) else None,
                     "n": len(complete), "cell": cell, "setting": setting})
    return rows


def placed(study: Study, trial: Trial) -> tuple[Cell, Setting]:
    """The cell and setting a stage's trial belongs to, from what it trains (its epochs, schedule and optimizer)."""
    key = training_key(trial.spec)
    if key not in study.by_training:
        raise UserError(f"trial {trial.dirname} is no method x budget of the study", where=study.source,
                        fix="restore study.yaml as the study wrote it")
    return study.by_training[key]


def choose(study: Study, rows: list[dict]) -> list[Choice]:
    """Per cell, the LR (and setting of the method's tuned parameters) with the best validation metric (a tie: the
    smaller LR, then the setting listed first); None where none completed."""
    pick = max if study.spec.metric.larger_is_better else min  # both return the first best: the smaller LR
    choices = []
    for cell in study.cells():
        candidates = sorted((r for r in rows if r["cell"] == cell and r["value"] is not None), key=lambda r: r["lr"])
        best = pick(candidates, key=lambda r: r["value"], default=None)
        choices.append(Choice(cell, best and best["lr"], best and best["value"], best["setting"] if best else ()))
    for row in rows:
        row["chosen"] = any(c.cell == row["cell"] and c.setting == row["setting"] and c.lr == row["lr"]
                            for c in choices)
    return choices


STUDY_COLUMNS = ("method", "budget_epochs", "lr", "tuned", "tune_metric", "test_acc_mean", "test_acc_std", "n",
                 "ci_low", "ci_high", "rank", "test", "p_value", "p_holm", "diff", "diff_ci_low", "diff_ci_high",
                 "identical_to")


def results(study: Study, choices: list[Choice], plan: sweeps.Plan, tuning: list[dict]) -> list[dict]:
    """study.csv's rows, from `lrdecay compare`'s ranking of the final runs by test accuracy per budget, plus
    the test against its budget's best (paired over the shared seeds; Holm-corrected over the budget's methods;
    None for the best itself or too few seeds), the method whose final runs it repeats, the average rank, and
    `edge`: whether the chosen LR is still the smallest or largest the cell was tuned at (the bound was reached)."""
    trial_cells = {trial.dirname: placed(study, trial)[0] for trial in plan.trials}
    started = [load_run(plan.path / name) for name in trial_cells if (plan.path / name / layout.SUMMARY).is_file()]
    boards = compare_by(started, METRICS[CompareMetric.TEST_ACC], key=lambda run: trial_cells[run.path.name].budget)
    found, names = {}, {}
    for board in boards.values():
        ranks = average_ranks(board)
        for number, group in enumerate(board.groups):
            cell = trial_cells[group.group.runs[0].path.name]
            found[cell], names[group.group.label] = (group, rank_of(board, number), ranks.get(number)), study.label(cell)
    rows = []
    for choice in choices:
        group, rank, average_rank = found.get(choice.cell, (None, None, None))
        s = group.best if group else None
        low, high = (s and s.ci95_bounds) or (None, None)
        rows.append({"method": study.label(choice.cell), "budget_epochs": choice.cell.budget, "lr": choice.lr,
                     "tuned": describe(choice.setting),
                     "tune_metric": choice.metric, "test_acc_mean": s and s.mean, "test_acc_std": s and s.std,
                     "n": s.n if s else 0, "ci_low": low, "ci_high": high, "rank": rank,
                     **_test_columns(group, names), "average_rank": average_rank,
                     "edge": at_edge(tuning, choice)})
    return rows


def _test_columns(group, names: dict[str, str]) -> dict:
    """The test against the budget's best; `names`: a compare group's label -> its method."""
    test = group and group.test
    return {"test": test and test.kind, "p_value": test and test.p, "p_holm": group and group.p_holm,
            "diff": test and test.diff, "diff_ci_low": test and test.ci_low, "diff_ci_high": test and test.ci_high,
            "identical_to": group and names.get(group.identical_to)}


def rank_of(board: Comparison, number: int) -> int | None:
    """Group `number`'s competition rank by mean (equal means share a rank; None: no completed run)."""
    mean = board.groups[number].best.mean
    return None if mean is None else 1 + sum(g.best.mean is not None and g.best.mean > mean for g in board.groups)


def write_tables(study: Study, tuning: list[dict], rows: list[dict] | None) -> None:
    write_atomic(study.path / layout.TUNING, to_csv([{k: v for k, v in r.items() if k not in ("cell", "setting")}
                                                     for r in tuning]))
    if rows is not None:
        write_atomic(study.path / layout.STUDY_TABLE, to_csv([{k: r[k] for k in STUDY_COLUMNS} for r in rows]))


@dataclass
class DryRunRow:
    label: str
    budget: int
    steps: int
    factors: list[float]  # the LR at the fractions `at` of the run (SHOWN_AT), as a multiple of the initial LR
    metric_driven: bool
    warning: str | None  # preview.flat_run_warning's
    at: tuple[float, ...] = ()


SHOWN_AT = (0.0, 0.5, 0.9, 1.0)


@dataclass
class Outcome:
    """Where a study run ended: `interrupted` by a signal (None: it ran its course), `waiting` for the stage whose
    trials did not finish (failed, interrupted: --resume runs them), the tables so far, and its directory."""

    tuning: list[dict]
    choices: list[Choice] | None = None
    rows: list[dict] | None = None
    interrupted: str | None = None
    waiting: str | None = None
    report: Path | None = None
    path: Path | None = None


def execute(study: Study, runs_dir: Path, executor: str = "vectorized", progress=None, **options) -> Outcome:
    """A study's whole lifecycle: its directory made (a new study) or locked (a reopened one), then `run`."""
    if study.path is None:
        create(study, runs_dir)
    with locked(study.path):
        return run(study, executor, progress, **options)


def run(study: Study, executor: str, progress=None, **options) -> Outcome:
    """Tune, extend each edge chosen (round by round, bounded), choose, run the final stage, write the tables
    and report; each stage runs only its pending trials, so a resumed study re-trains nothing that finished.
    `progress(stage, todo)` makes a stage's display."""
    def run_stage(name: str, plan: sweeps.Plan) -> tuple[sweeps.Plan, sweeps.Outcome]:
        plan = stage(study, name, plan)
        shown = (lambda todo: progress(name, todo)) if progress else None
        return plan, sweeps.execute(plan, study.path, executor, shown, **options)

    outcome, tuned, plan = Outcome([], path=study.path), [], study.tune_plan()
    while plan is not None:  # round 0 tunes the grid; each later round extends the edges the one before chose
        name = stage_name(len(tuned))
        plan, done = run_stage(name, plan)
        tuned.append(plan)
        outcome.tuning = tuning_rows(study, tuned)
        if done.interrupted or done.incomplete:
            write_tables(study, outcome.tuning, None)
            outcome.interrupted, outcome.waiting = done.interrupted, name
            return outcome
        outcome.choices = choose(study, outcome.tuning)
        plan = study.extension_plan(len(tuned), outcome.tuning, outcome.choices)
    if not any(choice.lr is not None for choice in outcome.choices):
        write_tables(study, outcome.tuning, None)
        raise UserError("no tuning run completed: every method diverged or failed at every LR",
                        where=str(study.path / "tune" / layout.RESULTS), fix="try smaller initial LRs (lrs:)")
    final, done = run_stage("final", study.final_plan(outcome.choices))
    outcome.rows = results(study, outcome.choices, final, outcome.tuning)
    write_tables(study, outcome.tuning, outcome.rows)
    if done.interrupted or done.incomplete:
        outcome.interrupted, outcome.waiting = done.interrupted, "final"
        return outcome
    from lrdecay_cli.output.study_report import write_report  # matplotlib: only once the study is done

    outcome.report = write_report(study, outcome.tuning, outcome.rows)
    return outcome
