"""A sweep file: its schema, and its expansion into trials (variants x grid x random draws x seeds), each a
validated spec built from its own copy of the base, with `--grid` and `--seeds`; experiments/sweep.py runs them."""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator, \
    model_validator

from lrdecay_cli.config.choices import CompareMetric
from lrdecay_cli.config.spec_file import flatten, from_data, load_base, merge_sections, set_fields
from lrdecay_cli.config.messages import first_problem, validated
from lrdecay_cli.config.spec import MAX_SEED, Spec
from lrdecay_cli.config.yaml_io import dump_yaml, parse_yaml, read_yaml_file
from lrdecay_cli.errors import UserError


def trial_dirname(index: int) -> str:
    """A trial's run directory in its sweep's: t000, t001, ... (rundir.layout.trial_dirs finds them)."""
    return f"t{index:03d}"


LEGACY_METRICS = {"best_val_acc": CompareMetric.VAL_ACC}
"""Sweep files written before the leaderboard became `lrdecay compare`'s ranking named its metric so."""
MAX_TRIALS = 10_000
"""The most trials a sweep may have, counted before any is built: more is a slip (--seeds 100000000), not a plan."""


def repeated(values: list) -> tuple[int, int] | None:
    """The (earlier, later) positions of the first value listed twice, which would make two identical trials.
    Lists and mappings compare by content; 1 and 1.0 are one value, true and 1 are not."""
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        key = json.dumps(value, sort_keys=True, default=repr) if isinstance(value, (dict, list)) else (
            isinstance(value, bool), value)
        if key in seen:
            return seen[key], i
        seen[key] = i
    return None


def refuse_repeats(values: list, what: str) -> None:
    if pair := repeated(values):
        raise ValueError(f"{what} lists {values[pair[1]]!r} twice: they would be identical trials")


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    uniform: tuple[StrictFloat, StrictFloat] | None = None
    log_uniform: tuple[StrictFloat, StrictFloat] | None = None

    @model_validator(mode="after")
    def _one_range(self):
        if (self.uniform is None) == (self.log_uniform is None):
            raise ValueError("give exactly one of uniform: [low, high] or log_uniform: [low, high]")
        low, high = self.uniform or self.log_uniform
        if not low < high or (self.log_uniform and low <= 0):
            raise ValueError(f"need 0 < low < high for log_uniform and low < high for uniform, got [{low}, {high}]")
        return self

    def draw(self, rng: random.Random) -> float:
        if self.uniform:
            return rng.uniform(*self.uniform)
        low, high = self.log_uniform
        return math.exp(rng.uniform(math.log(low), math.log(high)))


class RandomSearch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n: StrictInt = Field(..., ge=1, le=MAX_TRIALS, description="random draws")
    seed: StrictInt = Field(0, ge=0, le=MAX_SEED, description="seed of the draws (not of training)")
    fields: dict[str, Any] = Field(..., min_length=1, description="field -> a list of choices or a range")

    @field_validator("fields")
    @classmethod
    def _choices_or_range(cls, fields: dict[str, Any]) -> dict[str, list[Any] | Range]:
        out = {}
        for key, value in fields.items():
            if isinstance(value, list) and value:
                refuse_repeats(value, key)
                out[key] = value
            elif isinstance(value, dict):
                try:
                    out[key] = Range.model_validate(value)
                except ValidationError as exc:
                    raise ValueError(f"{key}: {first_problem(exc)}") from None
            else:
                raise ValueError(f"{key}: give a non-empty list of choices, or {{uniform: [low, high]}} "
                                 f"or {{log_uniform: [low, high]}}")
        return out


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    base: str | dict = Field(default_factory=dict, description="a spec path (relative to the sweep file) or a spec")
    variants: list[dict] = Field(default_factory=list, description="partial specs whose fields change together")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="field -> values (cartesian product)")
    random: RandomSearch | None = None
    seeds: StrictInt | list[StrictInt] | None = Field(
        None, description="a count (seeds 0..n-1) or a list of seeds; unset: each trial keeps its spec's seed")
    metric: CompareMetric = Field(CompareMetric.VAL_ACC,
                                  description="what the leaderboard ranks by, as lrdecay compare --metric")

    @field_validator("metric", mode="before")
    @classmethod
    def _legacy_metric(cls, value: Any) -> Any:
        return LEGACY_METRICS.get(value, value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid_lists(self):
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key} has no values")
            refuse_repeats(values, f"grid.{key}")
        if pair := repeated(self.variants):
            raise ValueError(f"variants.{pair[0]} and variants.{pair[1]} are the same, {self.variants[pair[1]]!r}: "
                             f"they would be identical trials")
        if isinstance(self.seeds, int) and not 1 <= self.seeds <= MAX_TRIALS:
            raise ValueError(f"seeds must be a positive count (at most {MAX_TRIALS:,}) or a list, got {self.seeds}")
        if isinstance(self.seeds, list) and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ValueError("seeds must be a non-empty list without repeats")
        if isinstance(self.seeds, list) and not all(0 <= seed <= MAX_SEED for seed in self.seeds):
            raise ValueError(f"seeds must be from 0 to 2**63 - 1, got {self.seeds}")
        setters = self.seed_setters()
        if setters and self.seeds is not None:
            raise ValueError(f"both seeds and {setters[0]} set the trials' seeds: give them in one place "
                             f"(drop seeds, or list the seeds there)")
        if self.size() > MAX_TRIALS:
            raise ValueError(f"the sweep has {self.size():,} trials (variants x grid x random.n x seeds), "
                             f"more than {MAX_TRIALS:,}")
        return self

    def seed_setters(self) -> list[str]:
        """Where the sweep sets a trial's seed besides `seeds`: the grid, variants, random fields."""
        found = ["grid.seed"] if "seed" in self.grid else []
        found += [f"variants.{i}.seed" for i, variant in enumerate(self.variants) if "seed" in variant]
        return found + (["random.fields.seed"] if self.random and "seed" in self.random.fields else [])

    def size(self) -> int:
        """The number of trials, from the sizes alone: nothing is expanded."""
        seeds = len(self.seeds) if isinstance(self.seeds, list) else self.seeds or 1
        draws = self.random.n if self.random else 1
        return max(1, len(self.variants)) * math.prod(len(v) for v in self.grid.values()) * draws * seeds

    def seed_list(self) -> list[int | None]:
        """The seeds each trial is repeated with; [None] where `seeds` is unset: the trial's spec decides."""
        if self.seeds is None:
            return [None]
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass
class Trial:
    index: int
    fields: dict[str, Any]
    """The swept values (dotted paths, variant fields flattened) and the seed: what tells trials apart."""
    spec: Spec
    source: str = "a sweep"
    """Where its spec came from, for error messages: the sweep file and the trial's values."""

    @property
    def dirname(self) -> str:
        return trial_dirname(self.index)


def parse_sweep(raw: Any, source: str, base_dir: Path) -> tuple[SweepSpec, dict]:
    """Validate sweep data; return it with the base spec loaded as raw data."""
    sweep = validated(SweepSpec, raw, source, "sweep spec", "configs/sweeps/decay_methods.yaml")
    return sweep, load_base(sweep.base, base_dir)


def expand(sweep: SweepSpec, base: dict, source: str, command_line: frozenset[str] = frozenset()) -> list[Trial]:
    """Every trial of the sweep, validated, in a fixed order so a resume finds the same trials; an invalid
    trial's error names the value that made it so (`--grid key=value` for the `command_line` grid keys).
    Where the sweep lists `seeds`, every trial is repeated with each of them instead of its spec's seed."""
    draws: list[dict] = [{}]
    if sweep.random:
        rng = random.Random(sweep.random.seed)
        draws = [{k: (v.draw(rng) if isinstance(v, Range) else rng.choice(v)) for k, v in sweep.random.fields.items()}
                 for _ in range(sweep.random.n)]
    grid = [dict(zip(sweep.grid, combo)) for combo in itertools.product(*sweep.grid.values())]
    trials = []
    variants = list(enumerate(sweep.variants)) or [(None, {})]
    for (number, variant), point, draw, seed in itertools.product(variants, grid, draws, sweep.seed_list()):
        raw = merge_sections(base, variant)
        fields = flatten(variant)
        causes = {key: f"{source}: variants.{number}" for key in fields}
        for key, value in point.items():
            causes[key] = f"--grid {key}={value}" if key in command_line else f"{source}: grid {key}={value}"
        causes.update({key: f"{source}: random draw {key}={value}" for key, value in draw.items()})
        values = {**point, **draw}
        set_fields(raw, values, {key: f"{source}: field '{key}'" for key in values})
        fields.update(values)
        if seed is not None:
            raw["seed"] = seed
        fields["seed"] = raw.get("seed", Spec.model_fields["seed"].default)
        label = ", ".join(f"{k}={v}" for k, v in fields.items())
        where = f"{source} (trial {len(trials)}: {label})"
        trials.append(Trial(len(trials), fields, from_data(raw, where, given=causes), where))
    return trials


def check_schedules(trials: list[Trial]) -> None:
    """Each trial's schedule over its run (`Spec.check_schedule`), once per distinct schedule and run."""
    seen = set()
    for trial in trials:
        spec = trial.spec
        key = (spec.schedule.model_dump_json(), spec.optimizer.lr, spec.steps_per_epoch(), spec.train.epochs)
        if key not in seen:
            spec.check_schedule(trial.source)
            seen.add(key)


def load(path: Path) -> tuple[SweepSpec, dict]:
    """A sweep file, or a plain spec (then the sweep has only the command line's grid and seeds)."""
    raw = read_yaml_file(path)
    if isinstance(raw, dict) and not set(raw) & {"base", "grid", "variants", "random", "seeds"}:
        raw = {"name": raw.get("name", "sweep"), "base": raw}
    return parse_sweep(raw, str(path), path.parent)


def resolved_yaml(sweep: SweepSpec, base: dict) -> str:
    """sweep.yaml: the sweep with its base inlined and seeds listed (where it has `seeds`)."""
    data = sweep.model_dump(mode="json", exclude_none=True)
    data["base"] = base
    if sweep.seeds is not None:
        data["seeds"] = sweep.seed_list()
    return dump_yaml(data)


def field_names(trials: list[Trial]) -> list[str]:
    """The swept fields of all trials, in first-seen order, the seed last."""
    return [k for k in dict.fromkeys(k for t in trials for k in t.fields) if k != "seed"] + ["seed"]


def with_command_line(sweep: SweepSpec, grid: list[str], seeds: str | None) -> SweepSpec:
    """Add `--grid key=v1,v2` (values parsed as YAML, each key once) and `--seeds 3` / `--seeds 0,5,7`."""
    extra, given = dict(sweep.grid), set()
    for item in grid:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UserError(f"cannot parse --grid '{item}'", fix="write it as --grid key.path=v1,v2,v3")
        if key in given:
            raise UserError(f"{key} is given twice", where="--grid",
                            fix=f"give all its values at once: --grid {key}=v1,v2")
        given.add(key)
        try:
            extra[key] = [parse_yaml(v, "--grid") for v in text.split(",")]
        except UserError:
            raise UserError(f"cannot parse the values of --grid '{item}'", fix="plain YAML values, comma-separated") from None
    update: dict[str, Any] = {"grid": extra}
    if seeds is not None:
        try:
            parsed = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise UserError(f"cannot parse --seeds '{seeds}'", fix="a count (3) or a list (0,5,7)") from None
        update["seeds"] = parsed[0] if len(parsed) == 1 else parsed
    try:
        return SweepSpec.model_validate({**sweep.model_dump(), **update})
    except ValidationError as exc:
        raise UserError(first_problem(exc, located=False), where="--grid/--seeds", fix="fix the command line") from None
