"""Runs grouped by their specs: runs whose resolved specs are equal but for the seed form one `Group`,
labelled by the spec fields in which the groups differ, never by directory names."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from lrdecay_cli.rundir.read import Run

NOT_LABELS = ("seed", "name", "data.root")
"""Spec fields that never tell groups apart: the seed makes a group's members; the rest are bookkeeping."""


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
    """Spec fields (dotted, in the spec's order) whose values differ between runs, seed and bookkeeping aside."""
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
        groups.setdefault(_key(values), Group(values)).runs.append(run)
    return list(groups.values())


def label_of(fields: dict[str, Any]) -> str:
    """`step, step_size=2, gamma=0.3`: a method's name stands alone, other fields go by their last
    part where that is unambiguous, by their dotted path where it is not."""
    last = [name.rsplit(".", 1)[-1] for name in fields]
    parts = []
    for short, (name, value) in zip(last, fields.items()):
        shown = short if last.count(short) == 1 else name
        parts.append(str(value) if short == "name" else f"{shown}={show_value(value)}")
    return ", ".join(parts)


def show_value(value: Any) -> str:
    """A spec value as labels and tables show it: floats short (`0.3`, `1e-05`), lists without spaces."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(show_value(v) for v in value) + "]"
    return str(value)
