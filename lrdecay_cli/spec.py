"""The YAML spec: pydantic models with defaults, and `load(path, overrides)`, the only YAML reader.

Every problem with a spec becomes one `UserError` naming the file, the dotted field path, the
value and the fix; pydantic's own messages never reach the user raw.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
import stat
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from lrdecay_cli.errors import UserError
from lrdecay_cli.schedules import METHODS
from lrdecay_cli.schedules.registry import check_run

DATASET_TRAIN_SIZES = {"mnist": 60_000}
"""Training-set size of each data set, known without loading it (steps per epoch, validation)."""
MAX_SEED = 2**63 - 1
"""torch.manual_seed takes up to 2**64 - 1; a signed 64-bit integer also stays exact in every CSV and
JSON reader that the runs' files meet."""


class Section(BaseModel):
    """Strict base: unknown keys, NaN and infinities are errors, never silently accepted, and so are
    values of another type (`lr: true`, `epochs: 2.5`, `compile: "yes"`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


class DataSpec(Section):
    dataset: Literal["mnist"] = "mnist"
    root: str | None = Field(None, description="data directory; default $LRDECAY_DATA or ~/.cache/lrdecay")
    val_size: int = Field(5000, ge=0, description="training images held out for validation; 0: train on all of "
                                                  "them (as pytorch/examples does), with no validation metrics")
    limit: int | None = Field(None, ge=2, description="use only the first N training images, counted before the "
                                                      "validation hold-out (quick runs)")
    split_seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the train/validation split")
    normalize: Literal["standard", "unit"] = Field(
        "standard", description="pixel scaling: standard (x/255 - 0.1307) / 0.3081 (pytorch/examples), unit x/255 (Keras)")

    @model_validator(mode="after")
    def _val_fits(self):
        available = self.train_images_available()
        if self.val_size >= available:
            source = f"data.limit ({self.limit})" if self.limit else f"the {available} {self.dataset} training images"
            raise ValueError(f"val_size ({self.val_size}) must be smaller than {source} "
                             f"(try data.val_size={max(1, available // 10)})")
        return self

    def train_images_available(self) -> int:
        total = DATASET_TRAIN_SIZES[self.dataset]
        return min(self.limit, total) if self.limit else total

    def train_size(self) -> int:
        """Images left for training after the validation split."""
        return self.train_images_available() - self.val_size


class MlpSpec(Section):
    name: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field([128], description="hidden layer widths")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    init: Literal["torch", "glorot_uniform"] = Field(
        "torch", description="initial weights: torch (nn.Linear's default) or glorot_uniform (Keras Dense: "
                             "xavier_uniform_ weights, zero biases)")


class CnnSpec(Section):
    name: Literal["cnn"] = "cnn"


class SgdSpec(Section):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, description="initial learning rate")
    momentum: float = Field(0.0, ge=0, lt=1)
    dampening: float = Field(0.0, ge=0, le=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self):
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening 0")
        return self


class AdamSpec(Section):
    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0, description="initial learning rate")
    betas: tuple[Annotated[float, Strict(), Field(ge=0, lt=1)], Annotated[float, Strict(), Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), strict=False)  # not strict itself: YAML writes a pair as a list
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    amsgrad: bool = False


class AdamWSpec(AdamSpec):
    name: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0)


class RmspropSpec(Section):
    name: Literal["rmsprop"] = "rmsprop"
    lr: float = Field(1e-2, gt=0, description="initial learning rate")
    alpha: float = Field(0.99, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    centered: bool = False
    weight_decay: float = Field(0.0, ge=0)


class AdadeltaSpec(Section):
    name: Literal["adadelta"] = "adadelta"
    lr: float = Field(1.0, gt=0, description="initial learning rate")
    rho: float = Field(0.9, ge=0, le=1)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)


def _tagged(*members: type[BaseModel]):
    return Annotated[Union[members], Field(discriminator="name")]


ModelSpec = _tagged(MlpSpec, CnnSpec)
OptimizerSpec = _tagged(SgdSpec, AdamSpec, AdamWSpec, RmspropSpec, AdadeltaSpec)
ScheduleSpec = _tagged(*(method.params for method in METHODS.values()))


class TrainSpec(Section):
    epochs: int = Field(5, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto | cpu | cuda[:N] | mps")
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = Field(False, description="torch.compile the model")
    tensorboard: bool = Field(False, description="also write TensorBoard event files to <run>/tensorboard")
    test_eval: bool = Field(True, description="evaluate on the test set at the end; a study's tuning runs do "
                                              "not, so that the test set plays no part in choosing")


class Spec(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    data: DataSpec = DataSpec()
    model: ModelSpec = MlpSpec()
    optimizer: OptimizerSpec = SgdSpec()
    schedule: ScheduleSpec = METHODS["constant"].params()
    train: TrainSpec = TrainSpec()

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """A section given without `name` means the default method (`optimizer: {lr: 0.05}` is sgd)."""
        if isinstance(data, dict):
            data = dict(data)
            for key in ("model", "optimizer", "schedule"):
                section = data.get(key)
                if isinstance(section, dict) and "name" not in section:
                    data[key] = {"name": cls.model_fields[key].default.name, **section}
        return data

    @model_validator(mode="after")
    def _batch_fits(self):
        if self.train.batch_size > self.data.train_size():
            raise ValueError(f"train.batch_size ({self.train.batch_size}) is larger than the "
                             f"{self.data.train_size()} training images")
        return self

    @model_validator(mode="after")
    def _plateau_has_its_metric(self):
        monitor = getattr(self.schedule, "monitor", None)
        if self.data.val_size == 0 and monitor is not None and monitor.startswith("val_"):
            raise ValueError(f"schedule.monitor is {monitor} but data.val_size is 0, so there is no validation "
                             f"set to measure it on (try schedule.monitor=train_loss)")
        return self

    def check_schedule(self, source: str) -> None:
        """Refuse a schedule whose parameters do not fit this run or whose LRs over it are not sane.

        Not part of validation: it builds the schedule and looks at its LRs over the run (`check_run`),
        so it runs once where a run is about to start or be previewed, not at every construction of a
        Spec (sweep expansion, resume)."""
        try:
            check_run(self.schedule, self.optimizer.lr, self.steps_per_epoch(), self.train.epochs)
        except UserError as exc:  # a run-dependent parameter check of the method's builder
            raise UserError(exc.what, where=f"{source}: {exc.where}" if exc.where else source, fix=exc.fix) from None
        except (ArithmeticError, ValueError) as exc:
            raise UserError(str(exc), where=f"{source}: schedule", fix=f"fix the schedule in {source}") from None

    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch: the last, partial batch counts."""
        return math.ceil(self.data.train_size() / self.train.batch_size)

    def dump(self) -> str:
        """The resolved spec (every default filled in) as YAML that `load` reads back unchanged."""
        return dump_yaml(self.model_dump(mode="json"))


# ----------------------------------------------------------------------------- loading


MAX_ALIASES = 32
"""A spec may reuse blocks with &anchor / *alias, but not so often that nested aliases could
expand into gigabytes (the "billion laughs")."""
MAX_DEPTH = 20
"""Specs and sweeps nest a few levels (sweep > base > schedule > phases > phase > warmup); deeper is no
spec, and PyYAML's recursive composer would end in a RecursionError."""
MAX_FILE_BYTES = 1_000_000
"""A spec is a few hundred bytes, a resolved sweep.yaml of the largest sweep some hundred KB; a larger
file is no spec (PyYAML took 108 s and 3.8 GB on a 48 MB one)."""
MAX_NODES = 100_000
"""Values in one YAML document: a sweep of 10,000 variants has some 80,000. It bounds the parse (PyYAML
takes some 25 us a value: a 1 MB flow list of 490,000 numbers took 12 s) to a few seconds."""

_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_CORE_BOOL = (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF")
_CORE_FLOAT = (_FLOAT, re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X), "-+0123456789.")


def _resolvers(base: type, drop: tuple[str, ...], add: tuple) -> dict:
    """`base`'s implicit scalar types without the tags in `drop`, with the (tag, regexp, first chars) in `add`."""
    table = {first: [(tag, regexp) for tag, regexp in entries if tag not in drop]
             for first, entries in base.yaml_implicit_resolvers.items()}
    for tag, regexp, firsts in add:
        for first in firsts:
            table.setdefault(first, []).append((tag, regexp))
    return table


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (instead of keeping the last one), alias bombs, deep nesting
    and complex keys, and reads booleans and floats as YAML 1.2 (and JSON) do: only true/false are
    booleans (YAML 1.1's yes/no/on/off stay strings, which the schema refuses for a bool), and 1e-3
    is a float (YAML 1.1 made it a string)."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeLoader, (_BOOL, _FLOAT), (_CORE_BOOL, _CORE_FLOAT))
    aliases = 0
    depth = 0
    nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise self._refuse(f"more than {MAX_ALIASES} YAML aliases",
                                   "write the values out instead of &anchor / *alias")
        self.depth, self.nodes = self.depth + 1, self.nodes + 1
        if self.nodes > MAX_NODES:
            raise self._refuse(f"more than {MAX_NODES:,} values", "a spec holds a few dozen")
        if self.depth > MAX_DEPTH:
            raise self._refuse(f"nested more than {MAX_DEPTH} levels deep", "a spec nests a few sections; flatten it")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def _refuse(self, what: str, fix: str, mark=None) -> UserError:
        mark = mark or self.peek_event().start_mark
        return UserError(f"{what} (line {mark.line + 1}, column {mark.column + 1})", where=str(self.name), fix=fix)


class _NoAliasDumper(yaml.SafeDumper):
    """Quotes every string that either YAML 1.1 or our loader would read as another type ('yes', '1e5')."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeDumper, (), (_CORE_FLOAT,))

    def ignore_aliases(self, data):
        return True


def dump_yaml(data: Any) -> str:
    """YAML that spells every value out (no &anchor / *alias), in the given key order."""
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


def _construct_unique_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise loader._refuse("a key is a list or a mapping", "keys are plain names, e.g. optimizer:",
                                 key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise UserError(
                f"duplicate key '{key}' at line {mark.line + 1}, column {mark.column + 1}",
                where=str(loader.name), fix="keep only one",
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> Python data; syntax errors become one line with line and column."""
    try:
        loader = _UniqueKeyLoader(text)
        loader.name = source
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"YAML syntax error{at}: {exc.problem or exc.context}", where=source,
                        fix="fix the YAML syntax") from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", where=source, fix="fix the YAML syntax") from None


def read_yaml_file(path: Path) -> Any:
    """The YAML document in `path`, or a one-line error for a missing, unreadable, undecodable or too
    large file, or one that is no regular file (opening a FIFO would wait for a writer forever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError("no such file", where=str(path), fix="check the path") from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc}", where=str(path), fix="check the path and its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError("is a directory, not a YAML file", where=str(path), fix="name the spec file")
    if not stat.S_ISREG(info.st_mode):
        raise UserError("is not a regular file (a FIFO, socket or device)", where=str(path),
                        fix="name a YAML file on disk")
    too_large = UserError(f"is larger than {MAX_FILE_BYTES:,} bytes, the most a spec or sweep file may have",
                          where=str(path), fix="name the spec file (a spec is a few hundred bytes)")
    if info.st_size > MAX_FILE_BYTES:
        raise too_large
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)  # it may have grown since the stat
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", where=str(path), fix="check the file's permissions and encoding") from None
    if len(data) > MAX_FILE_BYTES:
        raise too_large
    return parse_yaml(text, str(path))


def load(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Read a spec file, apply `--set key.path=value` overrides, validate into a `Spec`."""
    path = Path(path)
    raw = read_yaml_file(path)
    if raw is None:
        raise UserError("the spec is empty", where=str(path), fix="see configs/quickstart.yaml for an example")
    return from_data(raw, str(path), overrides)


def from_data(raw: Any, source: str, overrides: list[str] = (), given: dict[str, str] | None = None) -> Spec:
    """Validate spec data (already parsed) after applying overrides. An error names what caused it: the
    `--set` that set the field (or a field of the section at fault), a value in `given` (dotted field
    -> the option or sweep value that set it), else `source`."""
    if not isinstance(raw, dict):
        raise UserError(f"the spec must be a mapping of sections, got {type(raw).__name__}", where=source,
                        fix="see configs/quickstart.yaml for an example")
    causes = dict(given or {})
    for override in overrides:
        causes[apply_override(raw, override)] = f"--set {override}"
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise _user_error(exc, raw, source, causes) from None


def apply_override(raw: dict, override: str) -> str:
    """Apply one `key.path=value` (value parsed as YAML, typed later by the schema); return the path."""
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"cannot parse --set '{override}'", fix="write it as --set key.path=value, e.g. --set train.epochs=3")
    try:
        value = parse_yaml(text, "--set") if text.strip() else None
    except UserError:
        raise UserError(f"cannot parse the value of --set '{override}'",
                        fix="quote it or write plain YAML, e.g. 0.1, true, [1, 2]") from None
    set_field(raw, key, value, f"--set '{override}'")
    return key


def set_field(raw: dict, key: str, value: Any, source: str) -> None:
    """Set the dotted field `key` in raw spec data, creating sections; the path must exist in the schema."""
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{source}: '{'.'.join(parts[:depth + 1])}' is not a section", fix="set the field itself")
        node = child
    before = _model_at(parts[:-1], raw)
    node[parts[-1]] = value
    model = _model_at(parts[:-1], raw)
    if model is None or parts[-1] not in model.model_fields:
        raise UserError(f"{source}: the spec has no field '{key}'", fix=_did_you_mean(parts, raw))
    if parts[-1] == "name" and before is not None and model is not before:
        # another method: keep the settings it shares (lr, warmup...) but not the old method's parameters,
        # nor its unit: a schedule's interval returns to the new method's own default
        for stale in [k for k in node if k not in model.model_fields or k == "interval"]:
            del node[stale]


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"schedule": {"name": "step"}} -> {"schedule.name": "step"}."""
    out = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def merge_sections(base: dict, changes: dict) -> dict:
    """Nested update of raw spec data, as a new value that shares nothing with `base` or `changes`
    (each sweep trial is built from one and may then be changed field by field). A section naming
    another method (model, optimizer, schedule) replaces the old section instead of inheriting
    parameters the new method lacks; one naming the same method keeps the base's parameters."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        old = merged.get(key)
        same_kind = (isinstance(old, dict) and isinstance(value, dict)
                     and value.get("name", old.get("name")) == old.get("name"))
        merged[key] = merge_sections(old, value) if same_kind else copy.deepcopy(value)
    return merged


# ----------------------------------------------------------------------------- error messages


def _model_of(annotation: Any, value: Any, default: Any) -> type[BaseModel] | None:
    """The model class a field's annotation stands for, given its raw value (picks a tagged union's member)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0], value, default)
    if origin in (Union, types.UnionType):
        members = [m for m in typing.get_args(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
        if len(members) == 1:
            return members[0]
        tag = value.get("name", default.name) if isinstance(value, dict) else default.name
        for member in members:
            if member.model_fields["name"].default == tag:
                return member
    return None


def _model_at(parts: list[str], raw: Any) -> type[BaseModel] | None:
    """The model class at a dotted path of the spec (following the raw data's `name` tags), or None."""
    model: type[BaseModel] | None = Spec
    node = raw
    for part in parts:
        if model is None or part not in model.model_fields:
            return None
        field = model.model_fields[part]
        node = node.get(part) if isinstance(node, dict) else None
        model = _model_of(field.annotation, node, field.default)
    return model


def _did_you_mean(parts: list[str], raw: Any) -> str:
    parent = _model_at(parts[:-1], raw)
    if parent is None:
        valid = ", ".join(Spec.model_fields)
        return f"top-level sections are: {valid}"
    keys = list(parent.model_fields)
    close = difflib.get_close_matches(parts[-1], keys, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    where = ".".join(parts[:-1]) or "the spec"
    return f"{hint}valid keys in {where}: {', '.join(keys)}"


def _display_path(loc: tuple, raw: Any) -> list[str]:
    """pydantic's error location without the union tags it inserts (optimizer.sgd.lr -> optimizer.lr)."""
    parts, node = [], raw
    for item in loc:
        if isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, dict) and node.get("name", item) == item and item in _TAGS:
            continue
        else:
            parts.append(str(item))
            node = None
    return parts


_TAGS = {m.model_fields["name"].default for spec in (ModelSpec, OptimizerSpec, ScheduleSpec)
         for m in typing.get_args(typing.get_args(spec)[0])}
_SECTION_KIND = {"model": "model", "optimizer": "optimizer", "schedule": "schedule method"}


def _user_error(exc: ValidationError, raw: dict, source: str, causes: dict[str, str]) -> UserError:
    error = exc.errors()[0]
    parts = _display_path(error["loc"], raw)
    field = ".".join(parts)
    # the value that caused it: one set on the field itself, or in the section whose check failed, or, for a
    # check across sections (field ""), one its message names
    cause = next((text for key, text in causes.items()
                  if (key == field or key.startswith(f"{field}.") if field else key in error["msg"])), None)
    where = (f"{cause}: {field}" if cause else f"{source}: {field}") if field else cause or source
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return UserError(f"unknown key '{parts[-1]}'", where=where, fix=_did_you_mean(parts, raw))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        section = parts[0]
        valid = ", ".join(t.strip("'") for t in str(ctx.get("expected_tags", "")).split(", "))
        got = ctx.get("tag")
        what = f"unknown {_SECTION_KIND.get(section, section)} '{got}'" if got else f"missing 'name'"
        close = difflib.get_close_matches(str(got), valid.split(", "), n=1) if got else []
        hint = f"did you mean '{close[0]}'? " if close else ""
        return UserError(what, where=f"{source}: {field}.name", fix=f"{hint}valid names: {valid}")
    message = error["msg"].replace("Input should be", "must be").replace("Value error, ", "")
    value = error.get("input")
    shown = "" if isinstance(value, dict) or kind == "missing" else f", got {value!r}"
    fix = f"change {cause}" if cause else f"fix it in {source}"
    if tried := re.search(r" \(try ([\w.]+)=(\S+)\)$", message):  # a check's suggestion of what else to set
        message = message[:tried.start()]
        key, suggested = tried.groups()
        fix = (f"also --set {key}={suggested}" if cause and cause.startswith("--set") else
               f"change {cause}, or set {key}: {suggested}" if cause else f"set {key}: {suggested} in {source}")
    if kind == "bool_type":
        fix = f"write true or false ({fix})"
    return UserError(f"{message}{shown}", where=where, fix=fix)
