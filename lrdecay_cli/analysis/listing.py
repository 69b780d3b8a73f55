"""`lrdecay runs`: one row per run, sweep, study and find-lr directory of a runs directory, newest first, read from
summary.json, config.yaml and sweep.yaml only (nothing trained, locked or written; no torch import). A run's status
is its effective one (a run killed while running is interrupted); a directory that cannot be read is a row saying so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lrdecay_cli.analysis.compare import METRICS
from lrdecay_cli.config.sweep_file import expand, parse_sweep
from lrdecay_cli.config.yaml_io import read_yaml_file
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import layout
from lrdecay_cli.rundir.layout import STAMP, Kind, Status, effective_status, kind_of, trial_dirs
from lrdecay_cli.rundir.fs import in_use
from lrdecay_cli.rundir.read import Member, count, read_runs_dir, read_summary, summary_number

EXPAND_AT_MOST = 1000
"""A sweep's methods come from expanding its sweep.yaml (about 0.5 ms a trial) up to this many trials."""
UNREADABLE = "unreadable"
"""The status of a directory whose files cannot be read (not a run's status: none of rundir.Status)."""


@dataclass
class Row:
    """One directory as `lrdecay runs` lists it."""

    path: Path
    kind: Kind
    name: str
    state: str
    """A rundir.Status word (a sweep's: running, completed, or its worst trial's), or UNREADABLE."""
    status: str
    """What the table shows: `completed`, `interrupted (killed), 2/5 epochs`, `12/18 completed, 1 failed`."""
    schedule: str = "-"
    best_val_acc: float | None = None
    test_acc: float | None = None
    best_trial: str | None = None
    """The trial of a sweep (or of a study's final sweep) that the accuracies are from."""
    metric: str | None = None
    """The metric by which that trial is the best one."""
    when: datetime | None = None


def list_runs(runs_dir: Path) -> tuple[list[Row], list[Path]]:
    """The rows of a runs directory, newest first, and the folders in it that hold runs of their own."""
    if not runs_dir.exists():
        raise UserError("no such directory", where=str(runs_dir),
                        fix="name the --runs-dir that lrdecay train and sweep wrote to (default: runs)")
    if not runs_dir.is_dir():
        raise UserError("not a directory", where=str(runs_dir), fix="name a runs directory, e.g. lrdecay runs runs")
    if kind_of(runs_dir) in (Kind.RUN, Kind.FIND_LR):
        raise UserError("a run directory, not a runs directory", where=str(runs_dir),
                        fix=f"list the directory it is in: lrdecay runs {runs_dir.parent}")
    found = read_runs_dir(runs_dir)
    rows = [row_of(member) for member in found.members]
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    rows.sort(key=lambda row: (row.when or oldest, str(row.path)), reverse=True)
    return rows, found.nested


def select(rows: list[Row], status: str | None = None, name: str | None = None) -> list[Row]:
    """The rows in `status` whose name or directory name holds `name` (case-insensitive)."""
    wanted = name.lower() if name else None
    return [row for row in rows if (status is None or row.state == status)
            and (wanted is None or wanted in row.name.lower() or wanted in row.path.name.lower())]


def title(rows: list[Row], runs_dir: Path) -> str:
    """`2 sweeps, 14 runs, 1 find-lr directory in runs, newest first`."""
    plural = {Kind.STUDY: "studies", Kind.FIND_LR: "find-lr directories"}
    one = {Kind.FIND_LR: "find-lr directory"}
    kinds = Counter(row.kind for row in rows)
    counted = [count(n, one.get(kind, str(kind)), plural.get(kind)) for kind, n in kinds.items()]
    return f"{', '.join(counted)} in {runs_dir}, newest first"


def nothing_listed(runs_dir: Path, listed: int, status: str | None, name: str | None) -> str:
    """The one line in place of an empty table."""
    asked = " ".join(f"{option} {value}" for option, value in (("--status", status), ("--name", name)) if value)
    if listed and asked:
        return f"no runs, sweeps or studies in {runs_dir} match {asked} (of {listed})"
    return (f"no runs, sweeps or studies in {runs_dir} yet; lrdecay train SPEC or lrdecay sweep SWEEP "
            f"(--runs-dir {runs_dir}) writes them there")


def row_of(member: Member) -> Row:
    """The row of one directory; one that cannot be read is a row that says why."""
    path, kind = member.path, member.kind
    if member.problem is None:
        try:
            return {Kind.SWEEP: sweep_row, Kind.STUDY: study_row}.get(kind, run_row)(path, kind)
        except OSError as exc:
            member.problem = f"cannot be read ({exc.strerror or exc})"
    name = STAMP.sub("", path.name) or path.name
    return Row(path, kind, name, UNREADABLE, f"{UNREADABLE}: {member.problem}", when=stamp_time(path.name))


def stamp_time(name: str) -> datetime | None:
    """The UTC time a directory's name starts with (20261129-015200-quickstart), None where none."""
    found = STAMP.match(name)
    try:
        return datetime.strptime(found.group(1), "%Y%m%d-%H%M%S").replace(tzinfo=timezone.utc) if found else None
    except ValueError:
        return None


def _time(text: Any) -> datetime | None:
    """summary.json's started_at (ISO 8601), None where it is not one."""
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def run_row(path: Path, kind: Kind = Kind.RUN) -> Row:
    """A run (or find-lr) directory: summary.json, and its method from config.yaml."""
    summary = read_summary(path)
    when = stamp_time(path.name)
    if summary is None:
        torn = "torn" if (path / layout.SUMMARY).exists() else "no"
        return Row(path, kind, STAMP.sub("", path.name), UNREADABLE, f"{UNREADABLE}: {torn} summary.json", when=when)
    state, status = effective_status(summary, path)
    done, epochs = summary.get("epochs_completed"), summary.get("epochs")
    if state != Status.COMPLETED and isinstance(done, int) and isinstance(epochs, int):
        status += f", {done}/{epochs} epochs"
    if kind == Kind.FIND_LR:
        lr = summary_number(summary.get("suggested_lr"))
        schedule = "LR range test" + (f": {lr:.3g}" if lr is not None else "")
    else:
        schedule = _method(path / layout.CONFIG)
    return Row(path, kind, str(summary.get("name") or STAMP.sub("", path.name)), state, status, schedule,
               summary_number(summary.get("best_val_acc")), summary_number(summary.get("test_acc")),
               when=when or _time(summary.get("started_at")))


def _method(config: Path) -> str:
    """The schedule method of a run's config.yaml, `?` where it cannot be read."""
    try:
        data = read_yaml_file(config)
    except UserError:
        return "?"
    schedule = data.get("schedule") if isinstance(data, dict) else None
    return str(schedule.get("name", "?")) if isinstance(schedule, dict) else "?"


def sweep_row(path: Path, kind: Kind = Kind.SWEEP) -> Row:
    """A sweep directory: its trials' states counted from their summaries, its methods from sweep.yaml,
    its accuracies from its best completed trial by the sweep's metric."""
    name, total, methods, metric = STAMP.sub("", path.name), None, None, METRICS["val_acc"]
    source = path / layout.SWEEP
    try:
        sweep, base = parse_sweep(read_yaml_file(source), str(source), path)
        name, total, metric = sweep.name, sweep.size(), METRICS[sweep.metric]
        if total <= EXPAND_AT_MOST:
            methods = list(dict.fromkeys(t.spec.schedule.name for t in expand(sweep, base, str(source))))
    except UserError:  # a sweep.yaml this version does not read: the trials still say how they did
        pass
    held = in_use(path)
    states: Counter[str] = Counter()
    best: tuple[float, Path, dict] | None = None
    trials = trial_dirs(path)
    for trial in trials:
        summary = read_summary(trial)
        if summary is None:
            states[UNREADABLE if (trial / layout.SUMMARY).exists() else Status.PENDING] += 1
            continue
        state = str(summary.get("status"))
        states[Status.INTERRUPTED if state == Status.RUNNING and not held else state] += 1
        value = summary_number(summary.get(metric.summary_field))
        better = best is None or (value is not None and metric.best([value, best[0]]) != best[0])
        if state == Status.COMPLETED and value is not None and better:
            best = (value, trial, summary)
    total = total if total is not None else len(trials)
    states[Status.PENDING] += max(0, total - len(trials))
    state = str(_sweep_state(states, total, held))
    order = [Status.RUNNING, Status.FAILED, UNREADABLE, Status.INTERRUPTED, Status.DIVERGED]
    shown = [label for label in sorted(states, key=lambda s: (order.index(s) if s in order else len(order), s))
             if label not in (Status.COMPLETED, Status.PENDING) and states[label]]
    status = ", ".join([f"{states[Status.COMPLETED]}/{total} completed", *(f"{states[s]} {s}" for s in shown)])
    if state != Status.COMPLETED and state not in shown:  # say it where no count does
        status = f"{state}, {status}"
    schedule = "?" if methods is None else ", ".join(methods) if len(methods) <= 3 else f"{len(methods)} methods"
    row = Row(path, kind, name, state, status, schedule, when=stamp_time(path.name))
    if best is not None:
        row.best_val_acc, row.test_acc = summary_number(best[2].get("best_val_acc")), summary_number(best[2].get("test_acc"))
        row.best_trial, row.metric = best[1].name, metric.name
    return row


def _sweep_state(states: Counter, total: int, held: bool) -> str:
    """running while a process holds it; completed when every trial is; else its worst trials' state:
    failed (or unreadable), then interrupted (stopped with trials still to run), then diverged."""
    if held:
        return Status.RUNNING
    if states[Status.COMPLETED] == total:
        return Status.COMPLETED
    started = total - states[Status.PENDING]
    if started == 0:
        return Status.PENDING
    finished = states[Status.COMPLETED] + states[Status.DIVERGED]
    if finished + states[Status.INTERRUPTED] + states[Status.PENDING] < total:
        return Status.FAILED  # failed, unreadable or a status this version does not know
    if states[Status.INTERRUPTED] or states[Status.PENDING]:
        return Status.INTERRUPTED
    return Status.DIVERGED


def study_row(path: Path, kind: Kind = Kind.STUDY) -> Row:
    """A study directory: done when its final/ sweep is; its accuracies are that sweep's."""
    raw = None
    try:
        raw = read_yaml_file(path / layout.STUDY)
    except UserError:
        pass
    name = str(raw.get("name")) if isinstance(raw, dict) and raw.get("name") else STAMP.sub("", path.name)
    when = stamp_time(path.name)
    rounds = sorted((int(p.name[5:]) for p in path.glob("tune-*") if p.name[5:].isdigit()), reverse=True)
    for phase in ("final", *(f"tune-{r}" for r in rounds), "tune"):  # its latest stage: tune-N extends tune
        if kind_of(path / phase) == Kind.SWEEP:
            row = sweep_row(path / phase, Kind.STUDY)
            row.path, row.name, row.when, row.status = path, name, when, f"{phase}: {row.status}"
            if phase != "final":  # the study has not reached its final sweep
                row.best_val_acc = row.test_acc = row.best_trial = row.metric = None
                if row.state == Status.COMPLETED:
                    row.state = str(Status.RUNNING if in_use(path) else Status.INTERRUPTED)
            return row
    state = str(Status.RUNNING if in_use(path) else Status.PENDING)
    return Row(path, kind, name, state, f"{state}, no sweep yet", when=when)


def csv_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """`lrdecay runs --format csv`: one row per directory, accuracies as fractions at full precision."""
    return [{"name": row.name, "kind": str(row.kind), "status": row.state, "detail": row.status,
             "schedule": row.schedule, "best_val_acc": row.best_val_acc, "test_acc": row.test_acc,
             "best_trial": row.best_trial, "metric": row.metric,
             "when": row.when.isoformat() if row.when else None, "directory": str(row.path)} for row in rows]
