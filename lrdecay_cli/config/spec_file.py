"""Spec data: read, edited before validation (`--set`, a sweep's grid and variants, a study's methods), and
validated into a `Spec`, the only way lrdecay makes one from user data. Edits share nothing with their input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lrdecay_cli.config.messages import did_you_mean, model_at, spec_error
from lrdecay_cli.config.spec import Spec
from lrdecay_cli.config.yaml_io import parse_yaml, read_yaml_file
from lrdecay_cli.errors import UserError


def load(path: str | Path, overrides: list[str] = ()) -> Spec:
    """Read a spec file, apply `--set key.path=value` overrides, validate into a `Spec`."""
    path = Path(path)
    raw = read_yaml_file(path)
    if raw is None:
        raise UserError("the spec is empty", where=str(path), fix="see configs/quickstart.yaml for an example")
    return from_data(raw, str(path), overrides)


def from_data(raw: Any, source: str, overrides: list[str] = (), given: dict[str, str] | None = None) -> Spec:
    """Validate parsed spec data after applying overrides. An error names what caused it: the `--set`, a value
    in `given` (dotted field -> the option or sweep value that set it), else `source`."""
    if not isinstance(raw, dict):
        raise UserError(f"the spec must be a mapping of sections, got {type(raw).__name__}", where=source,
                        fix="see configs/quickstart.yaml for an example")
    causes = {**(given or {}), **apply_overrides(raw, overrides)}
    try:
        return Spec.model_validate(raw)
    except ValidationError as exc:
        raise spec_error(exc, raw, source, causes) from None


def load_base(base: str | dict, base_dir: Path) -> dict:
    """A sweep's or a study's base spec as raw data: inline, or a path relative to its file."""
    if isinstance(base, dict):
        return base
    path = Path(base) if Path(base).is_absolute() else base_dir / base
    loaded = read_yaml_file(path)
    if not isinstance(loaded, dict):
        raise UserError("the base spec must be a mapping", where=str(path), fix="point base: at a spec file")
    return loaded


def apply_overrides(raw: dict, overrides: list[str]) -> dict[str, str]:
    """Apply `--set key.path=value` overrides (values parsed as YAML, typed later by the schema), in the
    order `set_fields` gives them; return each set field -> the `--set` that set it."""
    values, texts = {}, {}
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"cannot parse --set '{override}'",
                            fix="write it as --set key.path=value, e.g. --set train.epochs=3")
        try:
            values[key] = parse_yaml(text, "--set") if text.strip() else None
        except UserError:
            raise UserError(f"cannot parse the value of --set '{override}'",
                            fix="quote it or write plain YAML, e.g. 0.1, true, [1, 2]") from None
        texts[key] = override
    set_fields(raw, values, {key: f"--set '{text}'" for key, text in texts.items()})
    return {key: f"--set {text}" for key, text in texts.items()}


CARRIED = ("warmup",)
"""What a section keeps when it is switched to another method: a warmup ramp goes in front of any method and
is none's parameter. Everything else is the old method's and never carries over, even under a shared name
(exponential's decay_steps is its period, cosine's its horizon; SGD's lr of 0.1 diverges Adam)."""


def set_fields(raw: dict, values: dict[str, Any], sources: dict[str, str]) -> None:
    """Set dotted fields in raw spec data, every section's `name` first: a switched method starts from its own
    defaults plus the values given with it, whatever their order."""
    for key in sorted(values, key=lambda key: key.rpartition(".")[2] != "name"):
        set_field(raw, key, values[key], sources[key])


def set_field(raw: dict, key: str, value: Any, source: str) -> None:
    """Set the dotted field `key` in raw spec data, creating sections; the path must exist in the schema.
    A `name` that picks another method drops the section's old parameters (`CARRIED` stays)."""
    parts = key.split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{source}: '{'.'.join(parts[:depth + 1])}' is not a section", fix="set the field itself")
        node = child
    before = model_at(parts[:-1], raw)
    node[parts[-1]] = value
    model = model_at(parts[:-1], raw)
    if parts[-1] == "name" and before is not None and "name" in before.model_fields:
        if model is not before:  # an unknown name is left to validation, which says "did you mean"
            for stale in [k for k in node if k != "name" and k not in CARRIED]:
                del node[stale]
    elif model is None or parts[-1] not in model.model_fields:
        raise UserError(f"{source}: the spec has no field '{key}'", fix=did_you_mean(parts, raw))


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


def merge_sections(base: dict, changes: dict, at: tuple[str, ...] = ()) -> dict:
    """Nested update of raw spec data, sharing nothing with `base` or `changes`. A section naming another
    method starts from that method's defaults: of the old section only `CARRIED` stays."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            if "name" in value and _method(at + (key,), value) is not _method(at + (key,), old):
                old = {k: old[k] for k in CARRIED if k in old}
            merged[key] = merge_sections(old, value, at + (key,))
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _method(at: tuple[str, ...], section: dict) -> Any:
    """The model class a section at path `at` stands for (its name's, or the default's); an unknown name itself."""
    raw = section
    for part in reversed(at):
        raw = {part: raw}
    return model_at(list(at), raw) or section.get("name")
