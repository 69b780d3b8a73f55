"""Run and sweep directories read back for `plot` and `compare` (no torch import).

A target is a run directory (config.yaml + summary.json, from `lrdecay train` or a sweep trial),
a sweep directory (sweep.yaml, expanded to its trials), or a runs directory (the --runs-dir of
train and sweep, or its sweeps/ folder: expanded to its single runs and its sweeps' trials). Runs
whose resolved specs are equal but for the seed form one `Group`; a group is labelled by the spec
fields in which the groups differ, never by directory names.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from enum import StrEnum
from typing import Any

from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import LR_COLUMNS, METRICS_COLUMNS, check_contiguous, read_csv
from lrdecay_cli.spec import flatten, read_yaml_file

NOT_LABELS = ("seed", "name", "data.root")
"""Spec fields that never tell groups apart: the seed makes a group's members; the rest are bookkeeping."""

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
        """metrics.csv: one row per finished epoch, 1, 2, ... (a run with holes is refused)."""
        rows = read_csv(self.path / "metrics.csv", METRICS_COLUMNS)
        check_contiguous(rows, "epoch", 1, self.path / "metrics.csv")
        return rows

    @cached_property
    def lr(self) -> list[dict]:
        """lr.csv: the LR the optimizer held at each step, 0, 1, ... (a run with holes is refused)."""
        rows = read_csv(self.path / "lr.csv", LR_COLUMNS)
        check_contiguous(rows, "step", 0, self.path / "lr.csv")
        return rows

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)

    @property
    def steps_per_epoch(self) -> int | None:
        return self.summary.get("steps_per_epoch")

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")


def load_run(path: Path) -> Run:
    """The run in `path`, or a user error saying what the directory is missing."""
    if not path.is_dir():
        raise UserError("not a directory" if path.exists() else "no such directory", where=str(path), fix=RUN_FIX)
    config_path, summary_path = path / "config.yaml", path / "summary.json"
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
    """A run's config.yaml with the defaults of fields added since it was written (data.normalize,
    model.init...), so that an old run and an equal new one group together; as written where it no
    longer validates."""
    from lrdecay_cli.spec import from_data

    try:
        return from_data(config, "config.yaml").model_dump(mode="json")
    except UserError:
        return config


def trial_dirs(sweep_dir: Path) -> list[Path]:
    """The trial directories a sweep has started (t000, t001, ...), in trial order."""
    return sorted(p for p in sweep_dir.glob("t[0-9][0-9][0-9]*") if p.is_dir() and p.name[1:].isdigit())


def is_sweep_dir(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


class Kind(StrEnum):
    """What lrdecay made a directory as, told by the files that mark it (`kind_of`)."""

    RUN = "run"
    SWEEP = "sweep"
    STUDY = "study"
    FIND_LR = "find-lr"


FOLDERS = {"sweeps": Kind.SWEEP, "studies": Kind.STUDY}
"""The folders of a runs directory that hold sweeps and studies (`<runs dir>/sweeps/<UTC time>-<name>/`)."""
STAMP = re.compile(r"^(\d{8}-\d{6})-")
"""The UTC time that starts the name of every directory lrdecay makes in a runs directory (`utc_stamp`)."""
FIND_LR_NAME = re.compile(r"-find-lr(-\d+)?$")


def kind_of(path: Path) -> Kind | None:
    """What `path` is (study.yaml, sweep.yaml, or a run's config.yaml / summary.json), None for none of them;
    an OSError where the directory cannot be read."""
    if (path / "study.yaml").is_file():
        return Kind.STUDY
    if is_sweep_dir(path):
        return Kind.SWEEP
    if (path / "config.yaml").is_file() or (path / "summary.json").is_file():
        return Kind.FIND_LR if (path / "find_lr.csv").is_file() or FIND_LR_NAME.search(path.name) else Kind.RUN
    return None


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
                marks = {Kind.SWEEP: "sweep.yaml", Kind.STUDY: "study.yaml"}.get(default, "summary.json")
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
    order) and its sweeps (their trials), with a note of what it expanded to and what it left out (find-lr
    directories, studies, sweeps with no started trial, directories without a summary). A file among
    several targets (`lrdecay compare runs/*` meets runs/README.md) is skipped with a note, and so is a
    find-lr directory (an LR range test has no epochs to compare)."""
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
        singles = [m.path for m in found.of_kind(Kind.RUN) if (m.path / "summary.json").is_file()]
        sweeps, unstarted = [], 0
        for member in found.of_kind(Kind.SWEEP):
            if any((p / "summary.json").is_file() for p in trial_dirs(member.path)):
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
        trials = sum(sum((p / "summary.json").is_file() for p in trial_dirs(s)) for s in sweeps)
        took = ([count(len(singles), "run")] if singles else []) + \
            ([f"the {count(trials, 'trial')} of {count(len(sweeps), 'sweep')}"] if sweeps else [])
        notes.append(f"{target}: {' and '.join(took)}" + (f"; left out: {', '.join(left_out)}" if left_out else ""))
        paths += singles + sweeps
    return paths, notes


def collect(targets: list[Path]) -> list[Run]:
    """The runs of run, sweep and runs directories, in the order given (a sweep's trials in trial order,
    a runs directory as `expand_targets` says).

    A sweep's trials that have not started yet are skipped; the same directory is read once."""
    if not targets:
        raise UserError("no run or sweep directory given", fix="name one or more, e.g. runs/20261129-050602-quickstart")
    seen: dict[Path, Run] = {}
    for target in expand_targets(targets)[0]:
        sweep = None
        if is_sweep_dir(target):
            trials = [p for p in trial_dirs(target) if (p / "summary.json").is_file()]
            if not trials:
                raise UserError("the sweep has no started trials yet", where=str(target),
                                fix=f"run it first: lrdecay sweep --resume {target}")
            paths = trials
            resolved = read_yaml_file(target / "sweep.yaml")
            sweep = str(resolved.get("name") or target.name) if isinstance(resolved, dict) else target.name
        else:
            paths = [target]
        for path in paths:
            key = path.resolve()
            if key not in seen:
                seen[key] = load_run(path)
                seen[key].sweep = sweep
    return list(seen.values())


@dataclass
class Group:
    """Runs with the same spec but for the seed; `fields` are the values that tell it from the others."""

    fields: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return label_of(self.fields) or self.runs[0].summary.get("name") or self.runs[0].path.name

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]


def differing_fields(runs: list[Run]) -> list[str]:
    """Spec fields (dotted) whose values are not the same in every run, seed and bookkeeping aside,
    in the spec's own order."""
    names = list(dict.fromkeys(k for run in runs for k in run.config))
    differing = [name for name in names if name not in NOT_LABELS
                 and len({_key(run.config.get(name, None)) for run in runs}) > 1]
    return [name for name in differing if not _follows_method(name, differing, runs)]


def _follows_method(name: str, differing: list[str], runs: list[Run]) -> bool:
    """True for a field of a section whose method differs (schedule.gamma where schedule.name does)
    that never varies between runs of the same method: the method's name already says it."""
    section = name.rpartition(".")[0]
    method = f"{section}.name"
    if not section or name == method or method not in differing:
        return False
    values: dict[str, set[str]] = {}
    for run in runs:
        values.setdefault(_key(run.config.get(method)), set()).add(_key(run.config.get(name)))
    return all(len(v) == 1 for v in values.values())


def _key(value: Any) -> str:
    """A hashable stand-in for a config value (lists and NaN included)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return json.dumps(value, sort_keys=True, default=repr)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs that differ only by seed, gathered into groups in order of first appearance."""
    fields = differing_fields(runs)
    groups: dict[str, Group] = {}
    for run in runs:
        values = {name: run.config[name] for name in fields if name in run.config}
        key = _key(values)
        groups.setdefault(key, Group(values)).runs.append(run)
    return list(groups.values())


def label_of(fields: dict[str, Any]) -> str:
    """`step, step_size=2, gamma=0.3`: a method's name stands alone, other fields go by their last
    part where that is unambiguous, by their dotted path where it is not."""
    last = [name.rsplit(".", 1)[-1] for name in fields]
    parts = []
    for name, value in fields.items():
        short = name.rsplit(".", 1)[-1]
        if short == "name":
            parts.append(str(value))
        else:
            shown = short if last.count(short) == 1 else name
            parts.append(f"{shown}={show_value(value)}")
    return ", ".join(parts)


def show_value(value: Any) -> str:
    """A spec value as labels and tables show it: floats short (`0.3`, `1e-05`), lists without spaces."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(show_value(v) for v in value) + "]"
    return str(value)
