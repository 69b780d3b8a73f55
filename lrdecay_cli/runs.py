"""Run and sweep directories read back for `plot` and `compare` (no torch import).

A target is a run directory (config.yaml + summary.json, from `lrdecay train` or a sweep trial)
or a sweep directory (sweep.yaml, expanded to its trials). Runs whose resolved specs are equal
but for the seed form one `Group`; a group is labelled by the spec fields in which the groups
differ, never by directory names.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import LR_COLUMNS, METRICS_COLUMNS, check_contiguous, read_csv
from lrdecay_cli.spec import flatten, read_yaml_file

NOT_LABELS = ("seed", "name", "data.root")
"""Spec fields that never tell groups apart: the seed makes a group's members; the rest are bookkeeping."""

RUN_FIX = "pass a directory made by lrdecay train (it holds config.yaml and summary.json) or by lrdecay sweep"


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
        raise UserError("no such directory", where=str(path), fix=RUN_FIX)
    config_path, summary_path = path / "config.yaml", path / "summary.json"
    if not config_path.is_file() or not summary_path.is_file():
        raise UserError("not a run or sweep directory (no config.yaml and summary.json, no sweep.yaml)",
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
    return Run(path, flatten(config), summary)


def trial_dirs(sweep_dir: Path) -> list[Path]:
    """The trial directories a sweep has started (t000, t001, ...), in trial order."""
    return sorted(p for p in sweep_dir.glob("t[0-9][0-9][0-9]*") if p.is_dir() and p.name[1:].isdigit())


def is_sweep_dir(path: Path) -> bool:
    return (path / "sweep.yaml").is_file()


def collect(targets: list[Path]) -> list[Run]:
    """The runs of run and sweep directories, in the order given (a sweep's trials in trial order).

    A sweep's trials that have not started yet are skipped; the same directory is read once."""
    if not targets:
        raise UserError("no run or sweep directory given", fix="name one or more, e.g. runs/20261129-050602-quickstart")
    seen: dict[Path, Run] = {}
    for target in targets:
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
