"""Studies: which decay method wins, fairly, at every budget (Schmidt et al. 2021: tune each method with
the same budget, then compare over seeds; Li et al. 2020 and Chen et al. 2021: the answer depends on
the budget).

    <runs dir>/studies/<UTC time>-<name>/
      study.yaml     the resolved study (base inlined, LRs and seeds listed): --resume re-plans from it
      tune/          a sweep: every method x budget x initial LR, on the tuning seeds, without a test evaluation
      tuning.csv     one row per method x budget x LR: its validation metric, and which LR was chosen
      final/         a sweep: every method x budget at its chosen LR, on other seeds, evaluated on the test set
      study.csv      one row per method x budget: the chosen LR, test accuracy over seeds, CI, rank
      report.md, *.png   the tables, figures and a verdict (study_report.py)

The two stages are ordinary sweep directories, so `plot`, `compare` and `sweep --resume` work on them.
The tuning runs never evaluate on the test set (`train.test_eval: false`): the test set plays no part
in choosing, by construction. A budget is the run's length, so a method whose horizon defaults to the
run (cosine, linear, rex, one_cycle, wsd, multistep's milestone_fractions, ...) is rebuilt for each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator, \
    model_validator

from lrdecay_cli import sweep as sweeps
from lrdecay_cli.choices import SelectionMetric
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import (Status, check_writable, make_unique_dir, read_summary, summary_number, to_csv, utc_stamp,
                                write_atomic)
from lrdecay_cli.spec import dump_yaml, from_data, merge_sections, read_yaml_file
from lrdecay_cli.stats import summarize

MAX_CELLS = 1_000
"""The most method x budget x LR combinations: each is a training run per tuning seed."""


class LogRange(BaseModel):
    """`lrs: {log_range: [0.01, 1.0], count: 5}`: count LRs evenly spaced in log between the two ends."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    log_range: tuple[StrictFloat, StrictFloat] = Field(..., strict=False)  # YAML writes a pair as a list
    count: int = Field(..., ge=2, le=100)

    @model_validator(mode="after")
    def _ordered(self):
        low, high = self.log_range
        if not 0 < low < high:
            raise ValueError(f"log_range needs 0 < low < high, got [{low}, {high}]")
        return self

    def values(self) -> list[float]:
        """Rounded to 4 significant digits, so that study.yaml and the tables read 0.03162, not 0.0316227766."""
        low, high = (math.log(v) for v in self.log_range)
        return [float(f"{math.exp(low + (high - low) * i / (self.count - 1)):.4g}") for i in range(self.count)]


class MethodEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    schedule: dict = Field(..., description="a schedule section, as in a spec")
    label: str | None = Field(None, min_length=1, max_length=40, description="its name in tables and figures")

    @property
    def name(self) -> str:
        return self.label or str(self.schedule.get("name", "?"))


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    base: str | dict = Field(..., description="a spec path (relative to the study file) or a spec")
    methods: list[MethodEntry] = Field(..., min_length=1)
    lrs: list[StrictFloat] | LogRange = Field(..., description="initial LRs to tune over, or a log range")
    budgets: list[StrictInt] = Field(..., min_length=1, description="training budgets, in epochs")
    tune_seeds: int = Field(1, ge=1, le=100, description="seeds each method x budget x LR is tuned with: 0..n-1")
    seeds: int = Field(3, ge=1, le=100, description="seeds of the final runs, after the tuning seeds")
    metric: SelectionMetric = Field(SelectionMetric.BEST_VAL_ACC, strict=False,
                                    description="what picks a method's LR at a budget (validation only)")

    @field_validator("lrs", mode="before")
    @classmethod
    def _list_or_range(cls, lrs: Any) -> Any:
        """One message for each form (a union's error would speak of the list form only)."""
        if isinstance(lrs, dict):
            try:
                return LogRange.model_validate(lrs)
            except ValidationError as exc:
                error = exc.errors()[0]
                at = ".".join(str(p) for p in error["loc"])
                raise ValueError(f"{at + ': ' if at else ''}{error['msg'].replace('Value error, ', '')}") from None
        if not isinstance(lrs, list) or not lrs:
            raise ValueError("give a list of initial LRs, e.g. [0.01, 0.1], or {log_range: [0.01, 1.0], count: 5}")
        return lrs

    @field_validator("lrs")
    @classmethod
    def _distinct_lrs(cls, lrs):
        values = lrs.values() if isinstance(lrs, LogRange) else lrs
        if any(v <= 0 for v in values):
            raise ValueError(f"initial LRs must be positive, got {values}")
        if len(set(values)) != len(values):
            raise ValueError(f"lrs lists a value twice: {values}")
        return lrs

    @field_validator("budgets")
    @classmethod
    def _increasing(cls, budgets: list[int]) -> list[int]:
        if any(b < 1 for b in budgets) or any(b <= a for a, b in zip(budgets, budgets[1:])):
            raise ValueError(f"budgets must be epochs >= 1 in increasing order, without repeats, got {budgets}")
        return budgets

    @model_validator(mode="after")
    def _distinct_methods(self):
        names = [m.name for m in self.methods]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"methods.{names.index(name)} and methods.{i} are both called '{name}': "
                                 f"give each a distinct label")
        if self.cells() > MAX_CELLS:
            raise ValueError(f"{len(self.methods)} methods x {len(self.budgets)} budgets x {len(self.lr_list())} "
                             f"LRs is {self.cells():,} combinations, more than {MAX_CELLS:,}")
        return self

    def lr_list(self) -> list[float]:
        """The initial LRs, smallest first (a tie in the metric goes to the smaller LR)."""
        return sorted(self.lrs.values() if isinstance(self.lrs, LogRange) else self.lrs)

    def cells(self) -> int:
        return len(self.methods) * len(self.budgets) * len(self.lr_list())

    def tune_seed_list(self) -> list[int]:
        return list(range(self.tune_seeds))

    def final_seed_list(self) -> list[int]:
        """Seeds no tuning run used: the final runs are fresh draws, not the tuned ones again."""
        return list(range(self.tune_seeds, self.tune_seeds + self.seeds))


@dataclass(frozen=True)
class Cell:
    """One method at one budget: a row of study.csv."""

    method: int
    budget: int
    """In epochs."""


@dataclass
class Choice:
    """The LR tuning chose for a cell (None where every LR diverged or failed) and its validation metric."""

    cell: Cell
    lr: float | None
    metric: float | None


@dataclass
class Study:
    """A study: its spec, base spec (raw data), where it came from, and its directory (None until `create`)."""

    spec: StudySpec
    base: dict
    source: str
    path: Path | None = None
    _cells: dict | None = None

    def cells(self) -> list[Cell]:
        """Budget-major: all methods of one budget side by side (they stack: one train section)."""
        return [Cell(m, b) for b in self.spec.budgets for m in range(len(self.spec.methods))]

    def by_schedule(self) -> dict[tuple[int, str], Cell]:
        """(epochs, resolved schedule as JSON) -> its cell: how a trial is known for what it trains."""
        if self._cells is None:
            self._cells = {(c.budget, self.spec_of(c).schedule.model_dump_json()): c for c in self.cells()}
        return self._cells

    def spec_of(self, cell: Cell):
        """The cell's spec at the base's LR (validated; the schedule as it trains)."""
        return from_data(merge_sections(self.base, self._variant(cell)), self.source)

    def label(self, cell: Cell) -> str:
        return self.spec.methods[cell.method].name

    def _variant(self, cell: Cell) -> dict:
        return {"schedule": self.spec.methods[cell.method].schedule, "train": {"epochs": cell.budget}}

    def tune_plan(self) -> sweeps.Plan:
        """Every cell x LR on the tuning seeds; the tuning runs skip the test evaluation."""
        sweep = sweeps.SweepSpec(name=f"{self.spec.name}-tune", variants=[self._variant(c) for c in self.cells()],
                                 grid={"optimizer.lr": self.spec.lr_list()}, seeds=self.spec.tune_seed_list(),
                                 metric=self.spec.metric.compare_metric)
        base = merge_sections(self.base, {"train": {"test_eval": False}})
        return sweeps.plan_of(sweep, base, f"{self.source} (tuning)")

    def final_plan(self, choices: list[Choice]) -> sweeps.Plan:
        """Every cell that has a chosen LR, at that LR, on the final seeds, with the test evaluation."""
        variants = [merge_sections(self._variant(c.cell), {"optimizer": {"lr": c.lr}}) for c in choices
                    if c.lr is not None]
        sweep = sweeps.SweepSpec(name=f"{self.spec.name}-final", variants=variants,
                                 seeds=self.spec.final_seed_list(), metric="test_acc")
        base = merge_sections(self.base, {"train": {"test_eval": True}})
        return sweeps.plan_of(sweep, base, f"{self.source} (final)")


def parse(raw: Any, source: str, base_dir: Path) -> Study:
    """A study file's data, validated, with its base loaded; every method x budget x LR is checked as the
    spec it will train (schema and schedule over the run) before anything is written."""
    spec = sweeps.validated(StudySpec, raw, source, "study", "configs/studies/decay_methods.yaml",
                            items={"methods": MethodEntry})
    base = sweeps.load_base(spec.base, base_dir)
    study = Study(spec, base, source)
    for i, method in enumerate(spec.methods):  # each method once, with the error naming it
        checked = from_data(merge_sections(base, {"schedule": method.schedule}), f"{source}: methods.{i}")
        if checked.data.val_size == 0:
            raise UserError("the base spec has no validation set (data.val_size: 0), and a study chooses each "
                            "LR on it", where=f"{source}: base", fix="give the base a data.val_size, e.g. 5000")
    return study


def load(path: Path) -> Study:
    return parse(read_yaml_file(path), str(path), path.parent)


def resolved_yaml(study: Study) -> str:
    """study.yaml: the study with its base inlined and its LRs listed, which `reopen` plans again from."""
    data = study.spec.model_dump(mode="json", exclude_none=True)
    data.update(base=study.base, lrs=study.spec.lr_list())
    return dump_yaml(data)


def create(study: Study, runs_dir: Path) -> Path:
    """Make `<runs_dir>/studies/<UTC time>-<name>/` with its study.yaml, where the disk has room for both stages."""
    from lrdecay_cli.train import run_bytes

    tune = study.tune_plan()
    per_seed = sum(run_bytes(t.spec) for t in tune.trials) / len(study.spec.tune_seed_list())
    check_writable(runs_dir, int(per_seed * (study.spec.tune_seeds + study.spec.seeds / len(study.spec.lr_list()))))
    study.path = make_unique_dir(runs_dir / "studies", f"{utc_stamp()}-{study.spec.name}")
    write_atomic(study.path / "study.yaml", resolved_yaml(study))
    return study.path


def reopen(study_dir: Path) -> Study:
    path = study_dir / "study.yaml"
    if not path.is_file():
        raise UserError("not a study directory (no study.yaml)", where=str(study_dir),
                        fix="pass a directory under <runs>/studies/")
    study = parse(read_yaml_file(path), str(path), study_dir)
    study.path = study_dir
    return study


def stage(study: Study, name: str, plan: sweeps.Plan) -> sweeps.Plan:
    """The stage's sweep directory `tune/` or `final/`: made on first use, else reopened, and then it must
    hold the plan's own trials (a study.yaml edited since would resume as what it is not)."""
    at = study.path / name
    if not (at / "sweep.yaml").is_file():
        if at.exists():  # made, but its sweep.yaml never written: nothing in it ran
            at.rmdir()
        sweeps.create(plan, study.path, at=at)
        return plan
    opened = sweeps.reopen(at)
    if [t.spec for t in opened.trials] != [t.spec for t in plan.trials]:
        raise UserError(f"{name}/ holds other trials than study.yaml plans", where=str(at),
                        fix="restore study.yaml as the study wrote it, or start a new study")
    return opened


def metric_of(summary: dict | None, metric: SelectionMetric) -> float | None:
    """A tuning run's validation metric; None unless it completed (a diverged LR is never chosen)."""
    if not summary or summary.get("status") != Status.COMPLETED:
        return None
    return summary_number(summary.get(metric.value))


def tuning_rows(study: Study, plan: sweeps.Plan) -> list[dict]:
    """One row per cell x LR: the selection metric's mean over the tuning seeds (None where any seed did
    not complete), read from the runs' summaries. Test metrics are not read: the runs have none."""
    per_lr = {}
    for trial in plan.trials:
        key = (cell_of(study, trial), trial.spec.optimizer.lr)
        per_lr.setdefault(key, []).append(metric_of(read_summary(plan.path / trial.dirname), study.spec.metric))
    rows = []
    for (cell, lr), values in per_lr.items():
        complete = [v for v in values if v is not None]
        rows.append({"method": study.label(cell), "budget_epochs": cell.budget, "lr": lr,
                     "metric": study.spec.metric.value,
                     "value": sum(complete) / len(complete) if complete and len(complete) == len(values) else None,
                     "n": len(complete), "cell": cell})
    return rows


def cell_of(study: Study, trial: sweeps.Trial) -> Cell:
    """The cell a stage's trial belongs to, from what it trains (its schedule and epochs)."""
    key = (trial.spec.train.epochs, trial.spec.schedule.model_dump_json())
    if key not in study.by_schedule():
        raise UserError(f"trial {trial.dirname} is no method x budget of the study", where=study.source,
                        fix="restore study.yaml as the study wrote it")
    return study.by_schedule()[key]


def choose(study: Study, rows: list[dict]) -> list[Choice]:
    """Per cell, the LR with the best validation metric (a tie: the smaller LR); None where none completed."""
    pick = max if study.spec.metric.larger_is_better else min  # both return the first best: the smaller LR
    choices = []
    for cell in study.cells():
        candidates = sorted((r for r in rows if r["cell"] == cell and r["value"] is not None), key=lambda r: r["lr"])
        best = pick(candidates, key=lambda r: r["value"], default=None)
        choices.append(Choice(cell, best and best["lr"], best and best["value"]))
    for row in rows:
        row["chosen"] = any(c.cell == row["cell"] and c.lr == row["lr"] for c in choices)
    return choices


STUDY_COLUMNS = ("method", "budget_epochs", "lr", "tune_metric", "test_acc_mean", "test_acc_std", "n", "ci_low",
                 "ci_high", "rank")


def results(study: Study, choices: list[Choice], plan: sweeps.Plan) -> tuple[list[dict], dict]:
    """study.csv's rows (accuracies as fractions), and per (method, budget) the test accuracies by final seed."""
    by_seed: dict[tuple[str, int], dict[int, float]] = {(study.label(c.cell), c.cell.budget): {} for c in choices}
    for trial in plan.trials:
        summary = read_summary(plan.path / trial.dirname)
        if summary and summary.get("status") == Status.COMPLETED and summary.get("test_acc") is not None:
            cell = cell_of(study, trial)
            by_seed[study.label(cell), cell.budget][trial.spec.seed] = summary["test_acc"]
    rows = []
    for choice in choices:
        s = summarize(list(by_seed[study.label(choice.cell), choice.cell.budget].values()))
        low, high = s.ci95_bounds or (None, None)
        rows.append({"method": study.label(choice.cell), "budget_epochs": choice.cell.budget, "lr": choice.lr,
                     "tune_metric": choice.metric, "test_acc_mean": s.mean, "test_acc_std": s.std, "n": s.n,
                     "ci_low": low, "ci_high": high, "rank": None})
    for budget in study.spec.budgets:
        ranked = sorted((r for r in rows if r["budget_epochs"] == budget and r["test_acc_mean"] is not None),
                        key=lambda r: -r["test_acc_mean"])
        for row in ranked:  # competition ranking: equal means share a rank
            row["rank"] = 1 + sum(other["test_acc_mean"] > row["test_acc_mean"] for other in ranked)
    return rows, by_seed


def write_tables(study: Study, tuning: list[dict], rows: list[dict] | None) -> None:
    write_atomic(study.path / "tuning.csv", to_csv([{k: v for k, v in r.items() if k != "cell"} for r in tuning]))
    if rows is not None:
        write_atomic(study.path / "study.csv", to_csv([{k: r[k] for k in STUDY_COLUMNS} for r in rows]))


@dataclass
class DryRunRow:
    label: str
    budget: int
    steps: int
    factors: list[float]
    """The LR at 0%, 50%, 90% and 100% of the run, as a multiple of the initial LR."""
    metric_driven: bool
    warning: str | None
    """preview.flat_run_warning's, where the curve never moves in this budget's run."""


SHOWN_AT = (0.0, 0.5, 0.9, 1.0)


def preview(study: Study) -> list[DryRunRow]:
    """Each method's curve at each budget, at a few points of the run, before any compute; a metric-driven
    method (plateau) is shown as it starts, before any plateau cuts it."""
    from lrdecay_cli.preview import flat_run_warning
    from lrdecay_cli.schedules import lr_schedule

    out = []
    for cell in study.cells():
        spec = study.spec_of(cell)
        steps = spec.steps_per_epoch() * cell.budget
        schedule = lr_schedule(spec.schedule, 1.0, spec.steps_per_epoch(), cell.budget)
        out.append(DryRunRow(study.label(cell), cell.budget, steps, [schedule(round(at * (steps - 1))) for at in SHOWN_AT],
                             schedule.metric_driven, flat_run_warning(spec)))
    return out


@dataclass
class Outcome:
    """Where a study run ended: `interrupted` by a signal (None: it ran its course), `waiting` for stage
    trials that did not finish (failed, interrupted: --resume runs them), and the tables so far."""

    tuning: list[dict]
    choices: list[Choice] | None = None
    rows: list[dict] | None = None
    interrupted: str | None = None
    waiting: str | None = None
    """The stage whose unfinished trials keep the study from going on."""
    report: Path | None = None
    path: Path | None = None
    """The study directory."""


def execute(study: Study, runs_dir: Path, executor: str = "vectorized", progress=None, **options) -> Outcome:
    """A study's whole lifecycle: its directory made (a new study) or locked (a reopened one), then `run`."""
    from lrdecay_cli.rundir import locked

    if study.path is None:
        create(study, runs_dir)
    with locked(study.path):
        return run(study, executor, progress, **options)


def run(study: Study, executor: str, progress=None, **options) -> Outcome:
    """Tune, choose, run the final stage, write the tables, figures and report; each stage runs only its
    pending trials, so a resumed study re-trains nothing that finished. `progress(stage, todo)` returns
    the display of a stage (an object with on_start, on_done, stop) or is None for none."""
    def run_stage(name: str, plan: sweeps.Plan) -> tuple[sweeps.Plan, sweeps.Outcome]:
        plan = stage(study, name, plan)
        shown = (lambda todo: progress(name, todo)) if progress else None
        return plan, sweeps.execute(plan, study.path, executor, shown, **options)

    tune, done = run_stage("tune", study.tune_plan())
    outcome = Outcome(tuning_rows(study, tune), path=study.path)
    if done.interrupted or done.incomplete:
        write_tables(study, outcome.tuning, None)
        outcome.interrupted, outcome.waiting = done.interrupted, "tune"
        return outcome
    outcome.choices = choose(study, outcome.tuning)
    if not any(choice.lr is not None for choice in outcome.choices):
        write_tables(study, outcome.tuning, None)
        raise UserError("no tuning run completed: every method diverged or failed at every LR",
                        where=str(study.path / "tune" / "results.csv"), fix="try smaller initial LRs (lrs:)")
    final, done = run_stage("final", study.final_plan(outcome.choices))
    outcome.rows, by_seed = results(study, outcome.choices, final)
    write_tables(study, outcome.tuning, outcome.rows)
    if done.interrupted or done.incomplete:
        outcome.interrupted, outcome.waiting = done.interrupted, "final"
        return outcome
    from lrdecay_cli.study_report import write_report

    outcome.report = write_report(study, outcome.tuning, outcome.rows, by_seed)
    return outcome
