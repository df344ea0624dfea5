"""Typed config fields: YAML nodes (with their line marks) -> frozen dataclasses.

The config is declared once, as frozen dataclasses whose annotations and `field()` metadata say
what each key accepts. This module turns composed YAML nodes into those dataclasses, collecting
every error with its line, and (in `json_schema`) turns the same declarations into a JSON Schema,
so the loader and the editor schema cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Union
from urllib.parse import urlsplit

import re2
import yaml

from exporter.config.durations import parse_duration
from exporter.config.issues import ConfigError as ConfigError  # re-exported: most modules import it from here
from exporter.config.issues import Issue, brief

# Annotated markers: the Python type says what the value is, the marker how to read it.
DURATION = "duration"
PATH = "path"
REGEX = "regex"
URL = "url"
Duration = Annotated[float, DURATION]
FilePath = Annotated[str, PATH]
Regex = Annotated[str, REGEX]
Url = Annotated[str, URL]

# `$$` is a literal `$` (as in docker-compose and Prometheus), so text can hold `${...}` unexpanded.
_ENV_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}", re.ASCII)
# Numbers as YAML writes them, ASCII digits only (int() and float() would also read "١" or "1_000").
_INT_RE = re.compile(r"[+-]?[0-9]{1,18}", re.ASCII)  # 18 digits: every value fits an int64
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?", re.ASCII)
_MISSING = object()


def opt(default: Any = dataclasses.MISSING, *, doc: str = "", check: Callable[[Any], None] | None = None,
        required: bool = False, enum: tuple[str, ...] | None = None, default_factory: Any = dataclasses.MISSING,
        max_length: int | None = None) -> Any:
    """Declare a config key: its default, a one-line doc, an optional check raising ValueError.

    `max_length` bounds a string (ids become labels and URL parts, titles fill pages and messages).
    """
    meta = {"doc": doc, "check": check, "required": required, "enum": enum, "max_length": max_length}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    if required:
        return field(default=None, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Reader:
    """Walks composed YAML nodes for one file, collecting issues instead of raising."""

    file: str
    base_dir: str = "."
    issues: list[Issue] = field(default_factory=list)
    env: typing.Mapping[str, str] = field(default_factory=lambda: os.environ)

    def error(self, node: yaml.Node | None, key: str, message: str) -> None:
        """Record one issue at a node's line."""
        line = node.start_mark.line + 1 if node is not None else 1
        self.issues.append(Issue(self.file, line, key, message))

    # --- scalars -------------------------------------------------------------------------------

    def expand(self, node: yaml.ScalarNode, key: str) -> str | None:
        """A scalar's text with ${VAR} and ${VAR:-default} expanded from the environment."""
        text = node.value
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            if m[1] is None:
                return "$"
            value = self.env.get(m[1])
            if value is None:
                if m[2] is not None:
                    return m[2]
                missing.append(m[1])
                return ""
            return value

        out = _ENV_RE.sub(sub, text)
        if missing:
            self.error(node, key, f"environment variable {missing[0]} is not set")
            return None
        return out

    def scalar(self, node: yaml.Node, key: str, want: str) -> Any:
        """Read a scalar node as str/int/float/bool; record an issue and return _MISSING if not."""
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, key, f"must be a {want}, got a {_node_kind(node)}")
            return _MISSING
        text = self.expand(node, key)
        if text is None:
            return _MISSING
        plain = not node.style  # unquoted (None, or '' from libyaml): YAML's own typing applies
        tag = node.tag
        if want == "string":
            if plain and tag.endswith(":null"):
                self.error(node, key, "must be a string, got null")
                return _MISSING
            return text
        if want == "boolean":
            if plain and text.lower() in ("true", "false", "yes", "no", "on", "off"):
                return text.lower() in ("true", "yes", "on")
            self.error(node, key, f"must be true or false, got {text!r}")
            return _MISSING
        if want in ("integer", "number"):
            try:
                if want == "integer":
                    if not _INT_RE.fullmatch(text):
                        raise ValueError
                    return int(text, 10)
                value = float(text) if _FLOAT_RE.fullmatch(text) else math.inf
                if not math.isfinite(value):
                    raise ValueError
                return value
            except ValueError:
                self.error(node, key, f"must be a{'n' if want == 'integer' else ''} {want}, got {brief(text)}")
                return _MISSING
        raise AssertionError(want)

    # --- typed conversion ----------------------------------------------------------------------

    def convert(self, node: yaml.Node, tp: Any, key: str) -> Any:
        """Convert a node to the annotated type `tp`, or record issues and return _MISSING."""
        if tp is Any:
            return node  # read later by hand (gates: their probe key decides their shape)
        origin = typing.get_origin(tp)
        if origin is Annotated:
            marker = typing.get_args(tp)[1]
            # Every marker reads a string: a duration is "15s", never a bare number of seconds.
            value = self.convert(node, str, key)
            if value is _MISSING:
                return value
            try:
                return _MARKERS[marker](value, self)
            except ValueError as exc:
                self.error(node, key, str(exc))
                return _MISSING
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and not node.style:
                return None
            if len(args) == 1:
                return self.convert(node, args[0], key)
            # str | list[str]: choose by node shape
            for arg in args:
                if _shape_matches(node, arg):
                    return self.convert(node, arg, key)
            self.error(node, key, f"must be {' or '.join(type_name(a) for a in args)}, got a {_node_kind(node)}")
            return _MISSING
        if origin in (list, tuple):
            item_tp = typing.get_args(tp)[0]
            if not isinstance(node, yaml.SequenceNode):
                self.error(node, key, f"must be a list, got a {_node_kind(node)}")
                return _MISSING
            items = [self.convert(item, item_tp, f"{key}[{i}]") for i, item in enumerate(node.value)]
            return _MISSING if any(i is _MISSING for i in items) else tuple(items)
        if origin is dict:
            _, val_tp = typing.get_args(tp)
            if not isinstance(node, yaml.MappingNode):
                self.error(node, key, f"must be a mapping, got a {_node_kind(node)}")
                return _MISSING
            out: dict[str, Any] = {}
            bad = False
            for k_node, v_node in self.pairs(node, key):
                name = k_node.value
                value = self.convert(v_node, val_tp, f"{key}.{name}")
                bad |= value is _MISSING
                out[name] = value
            return _MISSING if bad else types.MappingProxyType(out)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(node, tp, key)
        if tp is str:
            return self.scalar(node, key, "string")
        if tp is bool:
            return self.scalar(node, key, "boolean")
        if tp is int:
            return self.scalar(node, key, "integer")
        if tp is float:
            return self.scalar(node, key, "number")
        raise AssertionError(f"unsupported config type {tp!r}")

    def pairs(self, node: yaml.MappingNode, key: str) -> list[tuple[yaml.ScalarNode, yaml.Node]]:
        """A mapping's (key node, value node) pairs; duplicate or non-string keys are issues."""
        seen: set[str] = set()
        out = []
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                self.error(k_node, key, "mapping keys must be strings")
                continue
            if k_node.value in seen:
                self.error(k_node, _join(key, k_node.value), "duplicate key")
                continue
            seen.add(k_node.value)
            out.append((k_node, v_node))
        return out

    def dataclass(self, node: yaml.Node, cls: Any, key: str, skip: frozenset[str] = frozenset()) -> Any:
        """Build a frozen dataclass from a mapping node: unknown keys rejected, checks applied."""
        if not isinstance(node, yaml.MappingNode):
            self.error(node, key, f"must be a mapping, got a {_node_kind(node)}")
            return _MISSING
        hints, fields = _class_info(cls)
        values: dict[str, Any] = {}
        bad = False
        for k_node, v_node in self.pairs(node, key):
            name = k_node.value
            if name in skip:
                continue
            sub = _join(key, name)
            if name not in fields:
                known = ", ".join(sorted(n for n in fields if n not in skip))
                self.error(k_node, sub, f"unknown key (known keys: {known})")
                bad = True
                continue
            f = fields[name]
            value = self.convert(v_node, hints[name], sub)
            if value is not _MISSING:
                meta = f.metadata
                limit = meta.get("max_length")
                if limit is not None and isinstance(value, str) and len(value) > limit:
                    self.error(v_node, sub, f"too long: {len(value):,} characters (at most {limit:,})")
                    value = _MISSING
                elif meta.get("enum") and value not in meta["enum"]:
                    self.error(v_node, sub, f"must be one of {', '.join(meta['enum'])}, got {value!r}")
                    value = _MISSING
                elif meta.get("check"):
                    try:
                        meta["check"](value)
                    except ValueError as exc:
                        self.error(v_node, sub, str(exc))
                        value = _MISSING
            if value is _MISSING:
                bad = True
            else:
                values[name] = value
        for name, f in fields.items():
            if f.metadata.get("required") and name not in values and name not in skip:
                if not any(k.value == name for k, _ in node.value):
                    self.error(node, _join(key, name), "missing required key")
                bad = True
        if bad:
            return _MISSING
        obj = cls(**values)
        for sub, message in getattr(obj, "problems", lambda: [])():
            self.error(key_node(node, sub), _join(key, sub) if sub else key, message)
            bad = True
        return _MISSING if bad else obj


@functools.cache
def _class_info(cls: Any) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A config dataclass's resolved annotations and init fields (resolving them is slow: once per class)."""
    return typing.get_type_hints(cls, include_extras=True), {f.name: f for f in dataclasses.fields(cls) if f.init}


def child(node: yaml.Node | None, name: str) -> yaml.Node | None:
    """The value node of a mapping's key `name`, or None (also when `node` is not a mapping)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                return v
    return None


def key_node(node: yaml.Node | None, name: str) -> Any:
    """The key node `name` of a mapping, for pointing an issue at its line (`node` itself if absent)."""
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                return k
    return node


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if node.tag.endswith(":null") and isinstance(node, yaml.ScalarNode) and not node.style:
        return "null"
    return "scalar"


def _shape_matches(node: yaml.Node, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _shape_matches(node, typing.get_args(tp)[0])
    if origin in (list, tuple):
        return isinstance(node, yaml.SequenceNode)
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(node, yaml.MappingNode)
    return isinstance(node, yaml.ScalarNode)


def type_name(tp: Any) -> str:
    """A human name for a config type, for messages."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return str(typing.get_args(tp)[1])
    if origin in (list, tuple):
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(tp, str(tp))


# --- markers ----------------------------------------------------------------------------------


def _duration(value: str, reader: Reader) -> float:
    return parse_duration(value)


def _path(value: str, reader: Reader) -> str:
    if not value:
        raise ValueError("must not be empty")
    # Relative paths are relative to the config file's folder, as Prometheus does.
    return os.path.normpath(os.path.join(reader.base_dir, os.path.expanduser(value)))


class Pattern(str):
    """A regular expression compiled once, at load, with RE2: matching takes time linear in the text,
    whatever the pattern and the text (no backtracking, so no ReDoS from a target's output).

    It is the pattern's source text (it compares, hashes and prints as that) and carries the compiled
    program for UTF-8 bytes in `compiled`. RE2 differs from Python's `re`: no backreferences, no
    lookaround, no atomic groups or possessive quantifiers (refused at load); `\\d`, `\\w`, `\\s` are
    ASCII; `$` is the end of the text (write `(?m)$` for the end of a line).
    """

    compiled: Any  # re2._Regexp: google-re2 ships no type information

    def __new__(cls, source: str) -> Pattern:
        self = super().__new__(cls, source)
        self.compiled = _compile_re2(source)
        return self


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern (and DFA budget notes) on stderr
    return options


def _compile_re2(source: str) -> Any:
    """The RE2 program of `source`, or ValueError naming what is wrong or unsupported."""
    try:
        return re2.compile(source.encode("utf-8"), _re2_options())
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    try:
        parsed = re._parser.parse(source)  # type: ignore[attr-defined]
    except re.error as exc:
        raise ValueError(f"invalid regular expression {source!r}: {exc}") from None
    feature = _unsupported_feature(parsed)
    if feature:
        raise ValueError(f"invalid regular expression {source!r}: {feature} "
                         "(patterns run on RE2: linear time, no backtracking)") from None
    raise ValueError(f"invalid regular expression {source!r}: RE2 (linear time, no backtracking) refuses it: "
                     f"{reason}") from None


_UNSUPPORTED = {
    "GROUPREF": "backreferences (\\1, (?P=name)) are not supported",
    "GROUPREF_EXISTS": "conditionals (?(1)...) are not supported",
    "ASSERT": "lookahead and lookbehind ((?=...), (?<=...)) are not supported",
    "ASSERT_NOT": "negative lookahead and lookbehind ((?!...), (?<!...)) are not supported",
    "ATOMIC_GROUP": "atomic groups (?>...) are not supported",
    "POSSESSIVE_REPEAT": "possessive quantifiers (*+, ++, ?+) are not supported",
}


def _unsupported_feature(parsed: Any) -> str | None:
    """The first construct of a parsed Python pattern that RE2 lacks, in words; None if none is found."""
    for op, arg in parsed:
        name = str(op)
        if name in _UNSUPPORTED:
            return _UNSUPPORTED[name]
        if name == "AT" and str(arg) == "AT_END_STRING":
            return "\\Z is not supported (write \\z)"
        for sub in _subpatterns(arg):
            if found := _unsupported_feature(sub):
                return found
    return None


def _subpatterns(arg: Any) -> list[Any]:
    """The nested patterns in a parsed item's argument: groups, repeats, assertions, branches."""
    subpattern = re._parser.SubPattern  # type: ignore[attr-defined]
    if isinstance(arg, subpattern):
        return [arg]
    if isinstance(arg, (list, tuple)):
        return [s for item in arg for s in _subpatterns(item)]
    return []


def _regex(value: str, reader: Reader) -> Pattern:
    return Pattern(value)


def check_url(value: str) -> None:
    """Accept only absolute http(s) URLs with a host."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"invalid URL {value!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {value!r} (want http:// or https:// with a host)")


def _url(value: str, reader: Reader) -> str:
    check_url(value)
    return value


_MARKERS: dict[str, Callable[[Any, Reader], Any]] = {DURATION: _duration, PATH: _path, REGEX: _regex, URL: _url}
MISSING = _MISSING
