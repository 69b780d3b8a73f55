"""The one translation of pydantic's findings into lrdecay's one-line errors, for specs (naming the value that
set the field), sweep and study files; pydantic's own messages never reach the user raw."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

from lrdecay_cli.config.spec import ModelSpec, OptimizerSpec, ScheduleSpec, Spec
from lrdecay_cli.errors import UserError


def clean(message: str) -> str:
    """pydantic's message in our words (`must be`, no `Value error, ` prefix)."""
    return message.replace("Input should be", "must be").replace("Value error, ", "")


def first_problem(exc: ValidationError, located: bool = True) -> str:
    """The first thing pydantic found wrong, `at.path: message` where it has a place (a nested value's check)."""
    error = exc.errors()[0]
    at = ".".join(str(p) for p in error["loc"]) if located else ""
    return f"{at + ': ' if at else ''}{clean(error['msg'])}"


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
        return next((m for m in members if m.model_fields["name"].default == tag), None)
    return None


def model_at(parts: list[str], raw: Any) -> type[BaseModel] | None:
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


def did_you_mean(parts: list[str], raw: Any) -> str:
    parent = model_at(parts[:-1], raw)
    if parent is None:
        return f"top-level sections are: {', '.join(Spec.model_fields)}"
    keys = list(parent.model_fields)
    close = difflib.get_close_matches(parts[-1], keys, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    where = ".".join(parts[:-1]) or "the spec"
    return f"{hint}valid keys in {where}: {', '.join(keys)}"


def _display_path(loc: tuple, raw: Any) -> list[str]:
    """pydantic's error location without the union tags it inserts (optimizer.sgd.lr -> optimizer.lr)."""
    parts, node = [], raw
    for item in loc:
        if (isinstance(node, dict) and item in node
                or isinstance(node, list) and isinstance(item, int) and item < len(node)):
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


def spec_error(exc: ValidationError, raw: dict, source: str, causes: dict[str, str]) -> UserError:
    """What is wrong with spec data, as one line naming the field and what set it (`causes`: field -> option)."""
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
        return UserError(f"unknown key '{parts[-1]}'", where=where, fix=did_you_mean(parts, raw))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        valid = ", ".join(t.strip("'") for t in str(ctx.get("expected_tags", "")).split(", "))
        got = ctx.get("tag")
        what = f"unknown {_SECTION_KIND.get(parts[0], parts[0])} '{got}'" if got else "missing 'name'"
        close = difflib.get_close_matches(str(got), valid.split(", "), n=1) if got else []
        hint = f"did you mean '{close[0]}'? " if close else ""
        return UserError(what, where=f"{causes.get(f'{field}.name', source)}: {field}.name",
                         fix=f"{hint}valid names: {valid}")
    message = clean(error["msg"])
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


def validated(model: type[BaseModel], raw: Any, source: str, kind: str, example: str,
              items: dict[str, type[BaseModel]] | None = None) -> Any:
    """A sweep's or a study's file data as `model`, or one line naming the field at fault; an unknown key gets
    the valid ones (of `model`, or of `items[key]` for the entries of a list field)."""
    if not isinstance(raw, dict):
        raise UserError(f"a {kind} must be a mapping, got {type(raw).__name__}", where=source,
                        fix=f"see {example} for an example")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        where = ".".join(str(p) for p in loc)
        message, fix = clean(error["msg"]), f"fix it in {source}"
        owner = model if len(loc) == 1 else (items or {}).get(loc[0]) if len(loc) == 3 else None
        if error["type"] == "extra_forbidden" and owner is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(owner.model_fields), n=1)
            message = f"unknown key '{loc[-1]}'"
            fix = f"{f'did you mean {close[0]!r}? ' if close else ''}valid keys: {', '.join(owner.model_fields)}"
        raise UserError(message, where=f"{source}: {where}" if where else source, fix=fix) from None
