"""The reading side of run directories, for every command that reads runs. A target is a run directory, a
sweep directory (expanded to its trials), or a runs directory (expanded to its runs and its sweeps' trials)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lrdecay_cli.config.spec_file import flatten, from_data
from lrdecay_cli.config.yaml_io import read_yaml_file
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import layout
from lrdecay_cli.rundir.csvfile import check_contiguous, check_epochs, read_csv
from lrdecay_cli.rundir.layout import (FOLDERS, LR_COLUMNS, LR_COLUMNS_BEFORE_LOSS, METRICS_COLUMNS, STAMP, Kind,
                                       effective_status, is_sweep_dir, kind_of, trial_dirs)


RUN_FIX = ("pass a directory made by lrdecay train (it holds config.yaml and summary.json) or by lrdecay sweep, "
           "or a runs directory holding them")


@dataclass
class Run:
    """One run directory: its resolved spec (flattened), summary.json, and its CSVs read on demand."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    sweep: str | None = None
    """The name of the sweep it was read as a trial of (None: read as a run of its own)."""

    @cached_property
    def metrics(self) -> list[dict]:
        """metrics.csv: a row per evaluation, the last of each finished epoch 1, 2, ... at its end (a run with
        holes is refused)."""
        rows = read_csv(self.path / layout.METRICS, METRICS_COLUMNS)
        check_epochs(rows, self.path / layout.METRICS)
        return rows

    @property
    def epoch_rows(self) -> list[dict]:
        """metrics.csv's row at the end of each finished epoch (`epoch_ends`): what a run is compared by."""
        return epoch_ends(self.metrics)

    @cached_property
    def lr(self) -> list[dict]:
        """lr.csv: the LR the optimizer held at each step, 0, 1, ..., and its batch's training loss (None in a
        run written before lr.csv had it); a run with holes is refused."""
        rows = read_lr_csv(self.path)
        check_contiguous(rows, "step", 0, self.path / layout.LR)
        return rows

    @property
    def has_step_loss(self) -> bool:
        """Whether lr.csv has each step's training loss (runs written before it had the column do not)."""
        return any(row["loss"] is not None for row in self.lr)

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)

    @property
    def steps_per_epoch(self) -> int | None:
        return self.summary.get("steps_per_epoch")

    @cached_property
    def status(self) -> str:
        """Its effective status: a run killed while running is interrupted (layout.effective_status)."""
        return effective_status(self.summary, self.path)[0]


def load_run(path: Path) -> Run:
    """The run in `path`, or a user error saying what the directory is missing."""
    if not path.is_dir():
        raise UserError("not a directory" if path.exists() else "no such directory", where=str(path), fix=RUN_FIX)
    config_path, summary_path = path / layout.CONFIG, path / layout.SUMMARY
    if not config_path.is_file() or not summary_path.is_file():
        raise UserError("not a run or sweep directory (no config.yaml and summary.json, no sweep.yaml), "
                        "nor a runs directory holding them",
                        where=str(path), fix=RUN_FIX)
    config = read_yaml_file(config_path)
    if not isinstance(config, dict):
        raise UserError("config.yaml is not a mapping", where=str(config_path), fix="restore the run's config.yaml")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"summary.json is not valid JSON ({exc})", where=str(summary_path),
                        fix="rerun or resume the run; summary.json is rewritten whole at every epoch") from None
    if not isinstance(summary, dict):
        raise UserError("summary.json is not an object", where=str(summary_path), fix="restore or rerun the run")
    return Run(path, flatten(with_defaults(config)), summary)


def with_defaults(config: dict) -> dict:
    """A run's config.yaml with the defaults of fields added since it was written, so that an old run and an
    equal new one group together; as written where it no longer validates."""
    try:
        return from_data(config, layout.CONFIG).model_dump(mode="json")
    except UserError:
        return config


@dataclass
class Member:
    """A directory lrdecay made in a runs directory, or one named as such (stamped) that cannot be read."""

    path: Path
    kind: Kind
    """What it is; for an unreadable one, what its place says it would be (a run, or under sweeps/ a sweep)."""
    problem: str | None = None


@dataclass
class RunsDir:
    """What a runs directory holds: its run, find-lr, sweep and study directories, in name order (so in
    time order), and the folders in it that hold runs of their own (`runs/showcase/sweeps/...`)."""

    path: Path
    members: list[Member]
    nested: list[Path]

    def of_kind(self, kind: Kind) -> list[Member]:
        return [m for m in self.members if m.kind == kind and m.problem is None]


def read_runs_dir(path: Path) -> RunsDir:
    """The directories in `path` and in its sweeps/ and studies/ folders that lrdecay made (a folder it
    cannot list is an OSError). A stamped directory that is none of them is a member with its problem."""
    members, nested = [], []
    folders = [(path, Kind.RUN)] + [(path / name, kind) for name, kind in FOLDERS.items()]
    for folder, default in folders:
        if folder != path and not folder.is_dir():
            continue
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            if folder == path and child.name in FOLDERS:
                continue
            try:
                kind = kind_of(child)
                holds_runs = kind is None and any((child / name).is_dir() for name in FOLDERS)
            except OSError as exc:
                members.append(Member(child, default, f"cannot be read ({exc.strerror or exc})"))
                continue
            if kind is not None:
                members.append(Member(child, kind))
            elif holds_runs:
                nested.append(child)
            elif STAMP.match(child.name):
                marks = {Kind.SWEEP: layout.SWEEP, Kind.STUDY: layout.STUDY}.get(default, layout.SUMMARY)
                members.append(Member(child, default, f"no {marks}"))
    return RunsDir(path, members, nested)


def is_runs_dir(path: Path) -> bool:
    """A directory that is no run or sweep itself but holds some, or a sweeps/ or studies/ folder."""
    if not path.is_dir() or kind_of(path) is not None:
        return False
    found = read_runs_dir(path)
    return bool(found.members or found.nested) or any((path / name).is_dir() for name in FOLDERS)


def count(n: int, one: str, many: str | None = None) -> str:
    """`1 run`, `3 runs`, `2 studies` (`many` where the plural is not `one` + s)."""
    return f"{n} {one}" if n == 1 else f"{n} {many or one + 's'}"


def expand_targets(targets: list[Path]) -> tuple[list[Path], list[str]]:
    """Run and sweep directories as given; each runs directory in their place as its single runs (in time
    order) and its sweeps, with a note of what it expanded to and left out. A file or find-lr directory among
    several targets (`lrdecay compare runs/*` meets runs/README.md) is skipped with a note."""
    paths, notes = [], []
    for target in targets:
        if target.exists() and not target.is_dir() and len(targets) > 1:
            notes.append(f"skipped {target}: a file, not a run, sweep or runs directory")
            continue
        kind = kind_of(target) if target.is_dir() else None
        if kind == Kind.FIND_LR:
            if len(targets) > 1:
                notes.append(f"skipped {target}: an LR range test (find-lr), not a training run")
                continue
            raise UserError("an LR range test (lrdecay find-lr), not a training run", where=str(target),
                            fix="its result is in its summary.json and find_lr.png; compare run or sweep directories")
        if kind == Kind.STUDY:
            raise UserError("a study directory: its trials are in its tune/ and final/ sweeps", where=str(target),
                            fix=f"compare one of them, e.g. lrdecay compare {target / 'final'}")
        if kind is not None or not is_runs_dir(target):
            paths.append(target)  # a run or sweep, or what load_run says is not one
            continue
        found = read_runs_dir(target)
        singles = [m.path for m in found.of_kind(Kind.RUN) if (m.path / layout.SUMMARY).is_file()]
        sweeps, unstarted = [], 0
        for member in found.of_kind(Kind.SWEEP):
            if any((p / layout.SUMMARY).is_file() for p in trial_dirs(member.path)):
                sweeps.append(member.path)
            else:
                unstarted += 1
        partial = len(found.of_kind(Kind.RUN)) - len(singles) + sum(m.problem is not None for m in found.members)
        left_out = [count(n, one, many) for n, one, many in (
            (len(found.of_kind(Kind.FIND_LR)), "find-lr directory", "find-lr directories"),
            (len(found.of_kind(Kind.STUDY)), "study", "studies"),
            (unstarted, "sweep with no started trial", "sweeps with no started trial"),
            (partial, "unreadable or partial directory", "unreadable or partial directories")) if n]
        left_out += [f"{path} (name it to include its runs)" for path in found.nested]
        if not singles and not sweeps:
            raise UserError("a runs directory with no started run or sweep in it", where=str(target),
                            fix="train one first (lrdecay train configs/quickstart.yaml), "
                                "or name run or sweep directories")
        trials = sum(sum((p / layout.SUMMARY).is_file() for p in trial_dirs(s)) for s in sweeps)
        took = ([count(len(singles), "run")] if singles else []) + \
            ([f"the {count(trials, 'trial')} of {count(len(sweeps), 'sweep')}"] if sweeps else [])
        notes.append(f"{target}: {' and '.join(took)}" + (f"; left out: {', '.join(left_out)}" if left_out else ""))
        paths += singles + sweeps
    return paths, notes


def collect(targets: list[Path]) -> list[Run]:
    """The runs of run, sweep and runs directories, in the order given (a sweep's trials in trial order); a
    sweep's trials that have not started yet are skipped, and the same directory is read once."""
    if not targets:
        raise UserError("no run or sweep directory given", fix="name one or more, e.g. runs/20261129-050602-quickstart")
    seen: dict[Path, Run] = {}
    for target in expand_targets(targets)[0]:
        sweep = None
        if is_sweep_dir(target):
            trials = [p for p in trial_dirs(target) if (p / layout.SUMMARY).is_file()]
            if not trials:
                raise UserError("the sweep has no started trials yet", where=str(target),
                                fix=f"run it first: lrdecay sweep --resume {target}")
            paths = trials
            resolved = read_yaml_file(target / layout.SWEEP)
            sweep = str(resolved.get("name") or target.name) if isinstance(resolved, dict) else target.name
        else:
            paths = [target]
        for path in paths:
            key = path.resolve()
            if key not in seen:
                seen[key] = load_run(path)
                seen[key].sweep = sweep
    return list(seen.values())


def epoch_ends(rows: list[dict]) -> list[dict]:
    """The last of each epoch's metrics rows: the evaluation at its end (the others, `train.evals_per_epoch` > 1,
    come within it; a run writes an epoch's rows together, at its end)."""
    return [row for row, after in zip(rows, rows[1:] + [None]) if after is None or after["epoch"] != row["epoch"]]


def read_lr_csv(run_path: Path) -> list[dict]:
    """A run's lr.csv rows (`step, lr, loss`), also where it was written without the loss column (loss None)."""
    return read_csv(run_path / layout.LR, LR_COLUMNS, older=(LR_COLUMNS_BEFORE_LOSS,))


def read_summary(path: Path) -> dict | None:
    """A run directory's summary.json, or None where there is none (never started) or it does not parse."""
    try:
        summary = json.loads((path / layout.SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def summary_number(value) -> float | None:
    """A metric read from a summary: a finite number, else None (null, a torn or crafted value, a bool)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None
