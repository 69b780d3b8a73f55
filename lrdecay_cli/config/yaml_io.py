"""The one hardened YAML loader of specs, sweep and study files, and the dumper that writes them back; what
it refuses, it refuses with one line naming the file, line and column."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from lrdecay_cli.errors import UserError

MAX_ALIASES = 32
"""A spec may reuse blocks with &anchor / *alias, but not so often that they expand into gigabytes."""
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
    """SafeLoader that refuses duplicate keys, alias bombs, deep nesting and complex keys, and reads booleans and
    floats as YAML 1.2 does: yes/no/on/off stay strings (the schema refuses them), 1e-3 is a float."""

    yaml_implicit_resolvers = _resolvers(yaml.SafeLoader, (_BOOL, _FLOAT), (_CORE_BOOL, _CORE_FLOAT))
    aliases = depth = nodes = 0

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
            raise UserError(f"duplicate key '{key}' at line {mark.line + 1}, column {mark.column + 1}",
                            where=str(loader.name), fix="keep only one")
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
