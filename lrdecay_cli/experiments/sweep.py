"""Sweeps run: a sweep file's trials (config/sweep_file.py) planned, made into a sweep directory, run by an
executor, and tabled; the results and the leaderboard are always rebuilt from the trials' run directories.

    <runs dir>/sweeps/<UTC time>-<name>/
      sweep.yaml        the resolved sweep (base spec inlined, seeds listed); --resume checks its trials' config.yaml
      t000/ t001/ ...   one run directory per trial, in the train layout
      results.csv       one row per trial        leaderboard.csv   lrdecay compare's ranking, as CSV
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from lrdecay_cli.analysis.compare import METRICS, Comparison, compare, csv_rows
from lrdecay_cli.config.choices import CompareMetric
from lrdecay_cli.config.spec_file import apply_overrides, flatten, from_data
from lrdecay_cli.config.sweep_file import (SweepSpec, Trial, check_schedules, expand, field_names, load, parse_sweep,
                                           resolved_yaml, with_command_line)
from lrdecay_cli.config.yaml_io import read_yaml_file
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import layout
from lrdecay_cli.rundir.csvfile import to_csv
from lrdecay_cli.rundir.fs import check_writable, locked, make_unique_dir, write_atomic
from lrdecay_cli.rundir.layout import FINISHED, Status, trial_dirs, utc_stamp
from lrdecay_cli.rundir.read import collect, read_summary
from lrdecay_cli.schedules.preview import flat_run_warning


@dataclass
class Plan:
    """A sweep: its spec, base, trials and directory (`path` is None until `create` makes it)."""

    sweep: SweepSpec
    base: dict
    trials: list[Trial]
    path: Path | None = None

    def pending(self) -> list[Trial]:
        return pending(self.path, self.trials) if self.path else list(self.trials)

    def preview(self) -> tuple[list[Trial], list[str]]:
        """What a --dry-run shows: the trials still to run, and a warning for each whose LR never changes."""
        todo = self.pending()
        return todo, [f"{t.dirname}: {warning}" for t in todo if (warning := flat_run_warning(t.spec))]


def plan(path: Path, grid: list[str] = (), seeds: str | None = None, overrides: list[str] = (),
         name: str | None = None) -> Plan:
    """A new sweep from a file (or a plain spec) and --grid/--seeds/--set/--name, checked before anything is written."""
    sweep, base = load(path)
    if name is not None:
        try:
            sweep = SweepSpec.model_validate({**sweep.model_dump(), "name": name})
        except ValidationError:
            raise UserError(f"'{name}' is not a sweep name", where="--name",
                            fix="letters, digits, . _ - (starting with a letter or digit), at most 100") from None
    apply_overrides(base, overrides)
    sweep = with_command_line(sweep, list(grid), seeds)
    return plan_of(sweep, base, str(path), frozenset(item.partition("=")[0].strip() for item in grid))


def plan_of(sweep: SweepSpec, base: dict, source: str, command_line: frozenset[str] = frozenset()) -> Plan:
    """The plan of a sweep given as data (a study's stages are): trials expanded and their schedules checked."""
    trials = expand(sweep, base, source, command_line)
    check_schedules(trials)
    return Plan(sweep, base, trials)


def reopen(sweep_dir: Path) -> Plan:
    """An existing sweep directory's plan, for --resume. Its sweep.yaml must still expand to the trials
    on disk: an edited one would resume, label and rank trials as what they are not."""
    path = sweep_dir / layout.SWEEP
    if not path.is_file():
        raise UserError("not a sweep directory (no sweep.yaml)", where=str(sweep_dir),
                        fix="pass a directory under <runs>/sweeps/")
    sweep, base = parse_sweep(read_yaml_file(path), str(path), sweep_dir)
    trials = expand(sweep, base, str(path))
    check_trials_on_disk(sweep_dir, trials, path)
    return Plan(sweep, base, trials, sweep_dir)


def check_trials_on_disk(sweep_dir: Path, trials: list[Trial], path: Path) -> None:
    """Every started trial's config.yaml is the spec its trial expands to, field for field."""
    expanded = {trial.dirname: trial for trial in trials}
    fix = "restore sweep.yaml as the sweep wrote it, or start a new sweep"
    for trial_dir in trial_dirs(sweep_dir):
        config = trial_dir / layout.CONFIG
        if not config.is_file():
            continue
        if trial_dir.name not in expanded:
            raise UserError(f"it expands to {len(trials)} trials, but {trial_dir.name} has run", where=str(path),
                            fix=fix)
        ran = flatten(from_data(read_yaml_file(config), str(config)).model_dump(mode="json"))
        meant = flatten(expanded[trial_dir.name].spec.model_dump(mode="json"))
        for key in dict.fromkeys([*meant, *ran]):
            if meant.get(key, "(unset)") != ran.get(key, "(unset)"):
                raise UserError(f"trial {trial_dir.name} would have {key}={meant.get(key, '(unset)')!r}, but its "
                                f"config.yaml has {ran.get(key, '(unset)')!r}", where=str(path), fix=fix)


def create(plan: Plan, runs_dir: Path, at: Path | None = None) -> Path:
    """Make `<runs_dir>/sweeps/<UTC time>-<name>/` (or the new directory `at`: a study's stage) with its
    sweep.yaml, exclusively, where its disk has room for every trial."""
    from lrdecay_cli.training.loop import run_bytes  # torch: here, not for a --dry-run

    check_writable(runs_dir if at is None else at.parent, sum(run_bytes(t.spec) for t in plan.trials))
    if at is not None:
        at.mkdir()
    plan.path = at or make_unique_dir(runs_dir / "sweeps", f"{utc_stamp()}-{plan.sweep.name}")
    write_atomic(plan.path / layout.SWEEP, resolved_yaml(plan.sweep, plan.base))
    return plan.path


@dataclass
class Outcome:
    """What a sweep run left: results.csv's rows, the leaderboard (None before any trial started), and the
    signal that stopped it (None: it ran to the end)."""

    path: Path
    rows: list[dict]
    board: Comparison | None
    interrupted: str | None

    @property
    def incomplete(self) -> list[dict]:
        """Rows of trials that a --resume would run again (neither completed nor diverged)."""
        return [row for row in self.rows if row["status"] not in FINISHED]


def run(plan: Plan, todo: list[Trial], executor: str, on_start, on_done, **options) -> Outcome:
    """Run `todo` with `executor`; Ctrl-C and SIGTERM stop it cleanly, and the tables are rebuilt whatever happened."""
    from lrdecay_cli.experiments import executors  # torch: here, not for a --dry-run

    interrupted = None
    with executors.SweepSignals() as signals:
        try:
            executors.run(executor, todo, plan.path, on_start, on_done, **options)
        except KeyboardInterrupt as exc:
            interrupted = signals.stopped_by(exc)
        finally:
            signals.settled = True  # a SIGTERM now must not cut the tables short
            rows, board = write_tables(plan.path, plan.trials, plan.sweep.metric)
        interrupted = interrupted or signals.received
    return Outcome(plan.path, rows, board, interrupted)


def execute(plan: Plan, runs_dir: Path, executor: str = "auto", progress=None, **options) -> Outcome:
    """A sweep's directory made (a new plan) or locked (a second process in it is refused), its pending trials run.
    `progress(todo)` returns the display: on_start, on_done, stop, and optionally a training `observer`."""
    if plan.path is None:
        create(plan, runs_dir)
    with locked(plan.path):
        todo = plan.pending()
        shown = progress(todo) if progress else None
        try:
            return run(plan, todo, executor, on_start=shown.on_start if shown else (lambda trial: None),
                       on_done=shown.on_done if shown else (lambda trial, summary: None),
                       observer=getattr(shown, "observer", None), **options)
        finally:
            if shown:
                shown.stop()


def pending(sweep_dir: Path, trials: list[Trial]) -> list[Trial]:
    """Trials without a kept outcome; nothing is changed (a dry run asks too). The leftovers of one
    that cannot resume are cleared where it starts afresh (executors.stacks.run_stack)."""
    return [trial for trial in trials if (read_summary(sweep_dir / trial.dirname) or {}).get("status") not in FINISHED]


RESULT_COLUMNS = ("status", "best_val_acc", "final_val_acc", "test_acc", "final_val_loss", "final_train_loss",
                  "wall_seconds", "message")


def results(sweep_dir: Path, trials: list[Trial]) -> list[dict]:
    """One row per trial, read from its run directory (`pending` where it has not run yet). A started
    trial's swept values are its own config.yaml's, what it trained, whatever sweep.yaml says now."""
    names = field_names(trials)
    rows = []
    for trial in trials:
        summary = read_summary(sweep_dir / trial.dirname) or {"status": Status.PENDING}
        config = sweep_dir / trial.dirname / layout.CONFIG
        ran = read_yaml_file(config) if config.is_file() else None
        values = flatten(ran) if isinstance(ran, dict) else trial.fields
        rows.append({"trial": trial.dirname, **{k: values.get(k, "") for k in names},
                     **{c: summary.get(c) for c in RESULT_COLUMNS}})
    return rows


def leaderboard(sweep_dir: Path, metric: CompareMetric) -> Comparison | None:
    """The trials ranked as `lrdecay compare SWEEP_DIR --metric METRIC` ranks them; None before any has started."""
    if not any((path / layout.SUMMARY).is_file() for path in trial_dirs(sweep_dir)):
        return None
    return compare(collect([sweep_dir]), METRICS[metric])


def write_tables(sweep_dir: Path, trials: list[Trial], metric: CompareMetric):
    """Rebuild results.csv and leaderboard.csv from the run directories; return the rows and the comparison."""
    rows = results(sweep_dir, trials)
    board = leaderboard(sweep_dir, metric)
    write_atomic(sweep_dir / layout.RESULTS, to_csv(rows))
    write_atomic(sweep_dir / layout.LEADERBOARD, to_csv(csv_rows(board)) if board else "")
    return rows, board


