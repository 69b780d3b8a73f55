"""A study file: its schema and its base spec; experiments/study.py plans and runs it."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, \
    field_validator, model_validator

from lrdecay_cli.config.choices import SelectionMetric
from lrdecay_cli.config.spec_file import from_data, load_base, merge_sections, set_fields
from lrdecay_cli.config.messages import first_problem, validated
from lrdecay_cli.config.yaml_io import dump_yaml, read_yaml_file
from lrdecay_cli.errors import UserError

MAX_CELLS = 1_000
"""The most method x setting x budget x LR combinations: each is a training run per tuning seed."""

Setting = tuple[tuple[str, Any], ...]
"""One combination of a method's tuned parameters: ((dotted field, value), ...); () where it tunes none."""


def describe(setting: Setting) -> str:
    """`schedule.gamma=0.3, optimizer.weight_decay=0.0001`: a setting as tables show it ('' for none)."""
    return ", ".join(f"{key}={value}" for key, value in setting)


def training_key(spec) -> tuple:
    """What a method x budget's runs share whatever their LR: epochs, schedule and optimizer (as JSON); two
    methods with one key would train the very same runs."""
    return spec.train.epochs, spec.schedule.model_dump_json(), spec.optimizer.model_dump_json(exclude={"lr"})


def nested(setting: Setting) -> dict:
    """A setting as raw spec sections: (("schedule.gamma", 0.3),) -> {"schedule": {"gamma": 0.3}}."""
    out: dict = {}
    for key, value in setting:
        *sections, field = key.split(".")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[field] = value
    return out


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
    """A method: its schedule and, optionally, its own optimizer (the study tunes that optimizer's lr)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schedule: dict = Field(..., description="a schedule section, as in a spec")
    optimizer: dict | None = Field(None, description="an optimizer section, as in a spec, without lr: the base's "
                                   "optimizer where unset")
    label: str | None = Field(None, min_length=1, max_length=40, description="its name in tables and figures")
    tune: dict[str, list[StrictFloat | StrictInt | StrictBool | str]] | None = Field(
        None, description="the method's own parameters tuned jointly with the LR, e.g. {schedule.gamma: [0.1, 0.3]}")

    @field_validator("tune")
    @classmethod
    def _tunable(cls, tune):
        for key, values in (tune or {}).items():
            section, _, field = key.partition(".")
            if section not in ("schedule", "optimizer") or not field or field in ("name", "lr"):
                raise ValueError(f"'{key}': tune a parameter of the method's schedule or optimizer (schedule.gamma, "
                                 f"optimizer.weight_decay); the study tunes the LR itself")
            if not values or len({repr(v) for v in values}) != len(values):
                raise ValueError(f"'{key}': give a list of distinct values, got {values}")
        return tune

    def settings(self) -> list[Setting]:
        """Every combination of the tuned parameters' values, in the order given; [()] where none is tuned."""
        tune = self.tune or {}
        return [tuple(zip(tune, combo)) for combo in itertools.product(*tune.values())]

    @property
    def name(self) -> str:
        """The label, else the schedule's name, with the optimizer's where the method sets one: `constant (adam)`."""
        name = str(self.schedule.get("name", "?"))
        optimizer = self.optimizer and self.optimizer.get("name")
        return self.label or (f"{name} ({optimizer})" if optimizer else name)

    def sections(self) -> dict:
        """The spec sections the method sets, as raw data merged over the base (copies: nothing shared)."""
        return copy.deepcopy({"schedule": self.schedule, **({"optimizer": self.optimizer} if self.optimizer else {})})


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    base: str | dict = Field(..., description="a spec path (relative to the study file) or a spec")
    methods: list[MethodEntry] = Field(..., min_length=1)
    lrs: list[StrictFloat] | LogRange = Field(..., description="initial LRs to tune over, or a log range")
    budgets: list[StrictInt] = Field(..., min_length=1, description="training budgets, in epochs")
    tune_seeds: int = Field(2, ge=1, le=100, description="seeds each method x budget x LR is tuned with: 0..n-1 "
                            "(one seed lets the noise of one run pick the LR)")
    seeds: int = Field(3, ge=1, le=100, description="seeds of the final runs, after the tuning seeds")
    max_extensions: int = Field(2, ge=0, le=10, description="times a method x budget whose chosen LR is at the "
                                "grid's edge is tuned again one grid step beyond it, per side (0: never)")
    metric: SelectionMetric = Field(SelectionMetric.FINAL_VAL_ACC, strict=False,
                                    description="what picks a method's LR at a budget (validation only); the "
                                                "default matches what the study reports, the last epoch's model")

    @field_validator("lrs", mode="before")
    @classmethod
    def _list_or_range(cls, lrs: Any) -> Any:
        """One message for each form (a union's error would speak of the list form only)."""
        if isinstance(lrs, dict):
            try:
                return LogRange.model_validate(lrs)
            except ValidationError as exc:
                raise ValueError(first_problem(exc)) from None
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
            raise ValueError(f"{sum(len(m.settings()) for m in self.methods)} method settings x {len(self.budgets)} "
                             f"budgets x {len(self.lr_list())} LRs is {self.cells():,} combinations, more than "
                             f"{MAX_CELLS:,}")
        return self

    def lr_list(self) -> list[float]:
        """The initial LRs, smallest first (a tie in the metric goes to the smaller LR)."""
        return sorted(self.lrs.values() if isinstance(self.lrs, LogRange) else self.lrs)

    def edge_steps(self) -> tuple[float, float] | None:
        """The ratios one grid step down (below the smallest LR) and up (above the largest), as between the two
        neighbouring LRs at that edge; None for a grid of one LR, which has no step."""
        lrs = self.lr_list()
        return (lrs[1] / lrs[0], lrs[-1] / lrs[-2]) if len(lrs) > 1 else None

    def cells(self) -> int:
        """Method x setting x budget x LR combinations: the tuning grid's runs per tuning seed."""
        return sum(len(m.settings()) for m in self.methods) * len(self.budgets) * len(self.lr_list())

    def tune_seed_list(self) -> list[int]:
        return list(range(self.tune_seeds))

    def final_seed_list(self) -> list[int]:
        """Seeds no tuning run used: the final runs are fresh draws, not the tuned ones again."""
        return list(range(self.tune_seeds, self.tune_seeds + self.seeds))


def parse(raw: Any, source: str, base_dir: Path) -> tuple[StudySpec, dict]:
    """A study file's data, validated, with its base as raw data; each method is checked as the spec it trains."""
    spec = validated(StudySpec, raw, source, "study", "configs/studies/decay_methods.yaml",
                     items={"methods": MethodEntry})
    base = load_base(spec.base, base_dir)
    seen: dict[tuple, str] = {}
    for i, method in enumerate(spec.methods):  # each method once, with the error naming it
        if method.optimizer and "lr" in method.optimizer:
            raise UserError("a method's optimizer sets no lr: the study tunes it",
                            where=f"{source}: methods.{i}.optimizer",
                            fix="drop lr; the study tries each of `lrs` (and beyond the grid's edges)")
        for setting in method.settings():  # each value it tunes, as the spec it trains
            data = merge_sections(base, method.sections())
            set_fields(data, dict(setting), {key: f"{source}: methods.{i}.tune.{key}" for key, _ in setting})
            where = f"methods.{i}" + (f" ({describe(setting)})" if setting else "")
            checked = from_data(data, f"{source}: {where}")
            if (key := training_key(checked)) in seen:
                raise UserError(f"{seen[key]} and {where} train the very same runs", where=source,
                                fix="drop one, or make them differ in their schedule or optimizer")
            seen[key] = where
        if checked.data.val_size == 0:
            raise UserError("the base spec has no validation set (data.val_size: 0), and a study chooses each "
                            "LR on it", where=f"{source}: base", fix="give the base a data.val_size, e.g. 5000")
    return spec, base


def load(path: Path) -> tuple[StudySpec, dict]:
    return parse(read_yaml_file(path), str(path), path.parent)


def resolved_yaml(spec: StudySpec, base: dict) -> str:
    """study.yaml: the study with its base inlined and its LRs listed, which a resume plans again from."""
    data = spec.model_dump(mode="json", exclude_none=True)
    data.update(base=base, lrs=spec.lr_list())
    return dump_yaml(data)
