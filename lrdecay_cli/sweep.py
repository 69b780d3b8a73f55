"""Sweeps: a sweep spec expands into trials (variants x grid x random draws x seeds); the
results and the leaderboard are always rebuilt from the trials' run directories.

    <runs dir>/sweeps/<UTC time>-<name>/
      sweep.yaml        the resolved sweep (base spec inlined, seeds listed): re-expands to the same trials,
                        which --resume checks against the trials' own config.yaml
      t000/ t001/ ...   one run directory per trial, in the train layout
      results.csv       one row per trial        leaderboard.csv   lrdecay compare's ranking, as CSV
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator,
                      model_validator)

from lrdecay_cli.choices import CompareMetric
from lrdecay_cli.errors import UserError
from lrdecay_cli.rundir import (FINISHED, Status, check_writable, make_unique_dir, read_summary, to_csv, utc_stamp,
                                write_atomic)
from lrdecay_cli.runs import trial_dirs
from lrdecay_cli.spec import (MAX_SEED, Spec, apply_override, dump_yaml, flatten, from_data, merge_sections,
                              parse_yaml, read_yaml_file, set_field)

LEGACY_METRICS = {"best_val_acc": CompareMetric.VAL_ACC}
"""Sweep files written before the leaderboard became `lrdecay compare`'s ranking named its metric so."""
MAX_TRIALS = 10_000
"""The most trials a sweep may have, counted from its sizes before any trial is built: each is a training
run, so more is a slip (--seeds 100000000), not a plan, and would take hours to merely list."""


def repeated(values: list) -> tuple[int, int] | None:
    """The first (earlier, later) positions of one value listed twice: it would make two identical trials,
    counted as two runs that agree (std 0). Lists and mappings compare by content; 1 and 1.0 are one
    value, true and 1 are not."""
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
                    raise ValueError(f"{key}: {exc.errors()[0]['msg'].replace('Value error, ', '')}") from None
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
        return f"t{self.index:03d}"


def validated(model: type[BaseModel], raw: Any, source: str, kind: str, example: str,
              items: dict[str, type[BaseModel]] | None = None) -> Any:
    """A sweep's or a study's file data as `model`, or one line naming the field at fault; an unknown
    key gets the valid ones (of `model`, or of `items[key]` for the entries of a list field)."""
    if not isinstance(raw, dict):
        raise UserError(f"a {kind} must be a mapping, got {type(raw).__name__}", where=source,
                        fix=f"see {example} for an example")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        where = ".".join(str(p) for p in loc)
        message = error["msg"].replace("Input should be", "must be").replace("Value error, ", "")
        fix = f"fix it in {source}"
        owner = model if len(loc) == 1 else (items or {}).get(loc[0]) if len(loc) == 3 else None
        if error["type"] == "extra_forbidden" and owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1)
            message = f"unknown key '{loc[-1]}'"
            fix = f"{f'did you mean {close[0]!r}? ' if close else ''}valid keys: {', '.join(owner.model_fields)}"
        raise UserError(message, where=f"{source}: {where}" if where else source, fix=fix) from None


def load_base(base: str | dict, base_dir: Path) -> dict:
    """A sweep's or a study's base spec as raw data: inline, or a path relative to its file."""
    if isinstance(base, dict):
        return base
    path = Path(base) if Path(base).is_absolute() else base_dir / base
    loaded = read_yaml_file(path)
    if not isinstance(loaded, dict):
        raise UserError("the base spec must be a mapping", where=str(path), fix="point base: at a spec file")
    return loaded


def parse_sweep(raw: Any, source: str, base_dir: Path) -> tuple[SweepSpec, dict]:
    """Validate sweep data; return it with the base spec loaded as raw data."""
    sweep = validated(SweepSpec, raw, source, "sweep spec", "configs/sweeps/decay_methods.yaml")
    return sweep, load_base(sweep.base, base_dir)


def expand(sweep: SweepSpec, base: dict, source: str, command_line: frozenset[str] = frozenset()) -> list[Trial]:
    """Every trial of the sweep, validated; in a fixed order, so a resume finds the same trials. An
    invalid trial's error names the value that made it so: `--grid key=value` for the `command_line`
    grid keys, else the sweep file's grid, random field or variant.

    A trial's seed is the one its spec ends with (the base's, or a variant's, grid point's or draw's);
    where the sweep lists `seeds`, every trial is repeated with each of them instead. A sweep doing
    both is refused (`SweepSpec`): which seeds were meant is not ours to guess."""
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
        for key, value in {**point, **draw}.items():
            set_field(raw, key, value, f"{source}: field '{key}'")
            fields[key] = value
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


def load(path: Path, overrides: list[str] = ()) -> tuple[SweepSpec, dict]:
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


@dataclass
class Plan:
    """A sweep: its spec, base, trials and directory (`path` is None until `create` makes it)."""

    sweep: SweepSpec
    base: dict
    trials: list[Trial]
    path: Path | None = None

    def pending(self) -> list[Trial]:
        """The trials still to run (all of them before the directory exists)."""
        return pending(self.path, self.trials) if self.path else list(self.trials)


def plan(path: Path, grid: list[str] = (), seeds: str | None = None, overrides: list[str] = (),
         name: str | None = None) -> Plan:
    """A new sweep from a sweep file (or a plain spec) and the command line's --grid, --seeds, --set and
    --name: every trial validated and its schedule checked over its run, before anything is written."""
    sweep, base = load(path)
    if name is not None:
        try:
            sweep = SweepSpec.model_validate({**sweep.model_dump(), "name": name})
        except ValidationError:
            raise UserError(f"'{name}' is not a sweep name", where="--name",
                            fix="letters, digits, . _ - (starting with a letter or digit), at most 100") from None
    for item in overrides:
        apply_override(base, item)
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
    path = sweep_dir / "sweep.yaml"
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
        config = trial_dir / "config.yaml"
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
    from lrdecay_cli.train import run_bytes

    check_writable(runs_dir if at is None else at.parent, sum(run_bytes(t.spec) for t in plan.trials))
    if at is None:
        plan.path = make_unique_dir(runs_dir / "sweeps", f"{utc_stamp()}-{plan.sweep.name}")
    else:
        at.mkdir()
        plan.path = at
    write_atomic(plan.path / "sweep.yaml", resolved_yaml(plan.sweep, plan.base))
    return plan.path


@dataclass
class Outcome:
    """What a sweep run left: the rebuilt tables, and the signal that stopped it (None: it ran to the end)."""

    rows: list[dict]
    board: Any
    """The `compare.Comparison` of the trials, None before any has started."""
    interrupted: str | None

    @property
    def incomplete(self) -> list[dict]:
        return [row for row in self.rows if row["status"] not in FINISHED]


def run(plan: Plan, todo: list[Trial], executor: str, on_start, on_done, **options) -> Outcome:
    """Run `todo` (the plan's pending trials) with `executor` (executors.run's options); Ctrl-C and
    SIGTERM stop it cleanly. results.csv and leaderboard.csv are rebuilt from the run directories
    whatever happened."""
    from lrdecay_cli import executors

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
    return Outcome(rows, board, interrupted)


def execute(plan: Plan, runs_dir: Path, executor: str = "auto", progress=None, **options) -> Outcome:
    """A sweep's whole lifecycle: its directory made (a new plan) or locked (a reopened one: a second
    process working in it is refused), its pending trials run. `progress(todo)` returns the display (an
    object with on_start, on_done, stop, and optionally `observer`, the training loop's observer of the stacks
    trained in this process) or is None for none; `options` are executors.run's."""
    from lrdecay_cli.rundir import locked

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


def trial_status(sweep_dir: Path, trial: Trial) -> dict | None:
    """The trial's summary.json, or None where it never started."""
    return read_summary(sweep_dir / trial.dirname)


def resumable(sweep_dir: Path, trial: Trial) -> bool:
    """An interrupted, killed or failed trial with a checkpoint: it continues from there, not from scratch."""
    summary = trial_status(sweep_dir, trial)
    return (summary is not None and summary.get("status") not in FINISHED
            and (sweep_dir / trial.dirname / "checkpoint.pt").is_file()
            and (sweep_dir / trial.dirname / "config.yaml").is_file())


def pending(sweep_dir: Path, trials: list[Trial]) -> list[Trial]:
    """Trials without a kept outcome; nothing is changed (a dry run asks too). The leftovers of one
    that cannot resume are cleared where it starts afresh (executors.run_stack)."""
    return [trial for trial in trials if (trial_status(sweep_dir, trial) or {}).get("status") not in FINISHED]


RESULT_COLUMNS = ("status", "best_val_acc", "final_val_acc", "test_acc", "final_val_loss", "final_train_loss",
                  "wall_seconds", "message")


def field_names(trials: list[Trial]) -> list[str]:
    """The swept fields of all trials, in first-seen order, the seed last."""
    names = [k for k in dict.fromkeys(k for t in trials for k in t.fields) if k != "seed"]
    return names + ["seed"]


def results(sweep_dir: Path, trials: list[Trial]) -> list[dict]:
    """One row per trial, read from its run directory (`pending` where it has not run yet). A started
    trial's swept values are its own config.yaml's, what it trained, whatever sweep.yaml says now."""
    names = field_names(trials)
    rows = []
    for trial in trials:
        summary = trial_status(sweep_dir, trial) or {"status": Status.PENDING}
        config = sweep_dir / trial.dirname / "config.yaml"
        ran = read_yaml_file(config) if config.is_file() else None
        values = flatten(ran) if isinstance(ran, dict) else trial.fields
        row = {"trial": trial.dirname, **{k: values.get(k, "") for k in names}}
        row.update({c: summary.get(c) for c in RESULT_COLUMNS})
        rows.append(row)
    return rows


def leaderboard(sweep_dir: Path, metric: CompareMetric):
    """The sweep's trials ranked as `lrdecay compare SWEEP_DIR --metric METRIC` ranks them (one grouping,
    one statistics for both); None before any trial has started."""
    from lrdecay_cli.compare import METRICS, compare
    from lrdecay_cli.runs import collect, trial_dirs

    if not any((path / "summary.json").is_file() for path in trial_dirs(sweep_dir)):
        return None
    return compare(collect([sweep_dir]), METRICS[metric])


def write_tables(sweep_dir: Path, trials: list[Trial], metric: CompareMetric):
    """Rebuild results.csv and leaderboard.csv (compare's CSV) from the run directories; return the
    results rows and the comparison (None before any trial has started)."""
    from lrdecay_cli.compare import csv_rows

    rows = results(sweep_dir, trials)
    board = leaderboard(sweep_dir, metric)
    write_atomic(sweep_dir / "results.csv", to_csv(rows))
    write_atomic(sweep_dir / "leaderboard.csv", to_csv(csv_rows(board)) if board else "")
    return rows, board


def with_command_line(sweep: SweepSpec, grid: list[str], seeds: str | None) -> SweepSpec:
    """Add `--grid key=v1,v2` (values parsed as YAML, each key once) and `--seeds 3` / `--seeds 0,5,7`
    to a sweep."""
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
        error = exc.errors()[0]
        raise UserError(error["msg"].replace("Value error, ", ""), where="--grid/--seeds",
                        fix="fix the command line") from None
