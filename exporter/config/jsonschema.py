"""`qualitygate schema`: a JSON Schema (draft 2020-12) generated from the loader's own declarations."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Union

from exporter import __version__
from exporter.config.expect import UNITS
from exporter.config.fields import DURATION, PATH, REGEX, URL
from exporter.config.model import ID_RE, GateDoc, PhaseDoc, StepDoc, TrackerDoc
from exporter.probes import KINDS

ENV = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
# At most 16 digits a unit, as the loader (which also bounds the whole to 100y).
DURATION_PATTERN = ("^(0|([0-9]{1,16}y)?([0-9]{1,16}w)?([0-9]{1,16}d)?([0-9]{1,16}h)?([0-9]{1,16}m)?([0-9]{1,16}s)?"
                    "([0-9]{1,16}ms)?)$")
ID_PATTERN = ID_RE.pattern
SCHEMA_ID = "https://github.com/qualitygate-exporter/qualitygate-exporter/schema/config.json"


def _expect_pattern(measurements: tuple[str, ...]) -> str:
    names = "|".join(measurements)
    units = "|".join(sorted(UNITS, key=len, reverse=True))
    number = r"(true|false|[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)"
    return rf"^\s*(({names})\s*)?(<=|>=|==|!=|<|>)\s*{number}\s*({units})?\s*$"


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        marker = typing.get_args(tp)[1]
        if marker == DURATION:
            return {"type": "string", "pattern": DURATION_PATTERN, "examples": ["15s", "5m", "1h30m", "30d"]}
        if marker == URL:
            return {"type": "string", "pattern": rf"^(https?://|{ENV})"}
        if marker == REGEX:
            return {"type": "string", "format": "regex"}
        if marker == PATH:
            return {"type": "string", "minLength": 1}
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _type_schema(args[0])
        return {"anyOf": [_type_schema(a) for a in args]}
    if origin in (list, tuple):
        item = typing.get_args(tp)[0]
        return {"type": "array", "items": _type_schema(item) if item is not Any else {}}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(typing.get_args(tp)[1])}
    if dataclasses.is_dataclass(tp):
        return dataclass_schema(tp)
    # The loader reads any scalar as a string where a string is wanted (valid_status_codes: [200, 3xx]).
    scalars: dict[object, dict[str, Any]] = {str: {"type": ["string", "number", "boolean"]}, int: {"type": "integer"},
                                             float: {"type": "number"}, bool: {"type": "boolean"}}
    return scalars[tp]


def dataclass_schema(cls: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """An object schema from a config dataclass: its keys, types, docs, enums, required keys."""
    hints = typing.get_type_hints(cls, include_extras=True)
    props: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        s = dict(_type_schema(hints[f.name]))
        if f.metadata.get("doc"):
            s["description"] = f.metadata["doc"]
        if f.metadata.get("enum"):
            s["enum"] = list(f.metadata["enum"])
        if f.metadata.get("check") and f.name in ("id", "tracker"):
            s["pattern"] = ID_PATTERN
        if f.metadata.get("max_length"):
            s["maxLength"] = f.metadata["max_length"]
        props[f.name] = s
        if f.metadata.get("required"):
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = cls.__doc__.strip().splitlines()[0]
    if required:
        out["required"] = required
    return out


def gate_schema() -> dict[str, Any]:
    """A gate: the common keys, exactly one probe key, and expect conditions the kind can meet."""
    gate = dataclass_schema(GateDoc)
    gate.pop("additionalProperties")
    for name, kind in KINDS.items():
        spec = dataclass_schema(kind.spec)
        spec["description"] = kind.doc or spec.get("description", "")
        gate["properties"][name] = spec
    gate["additionalProperties"] = False
    gate["oneOf"] = [{"required": [name]} for name in KINDS]
    rules = []
    for name, kind in KINDS.items():
        cond = {"type": "string", "pattern": _expect_pattern(kind.measurements)}
        then: dict[str, Any] = {"properties": {"expect": {"anyOf": [cond, {"type": "array", "items": cond}]}}}
        if kind.needs_expect:
            then["required"] = ["expect"]
        rules.append({"if": {"required": [name]}, "then": then})
    gate["allOf"] = rules
    return gate


def config_schema() -> dict[str, Any]:
    """The whole config's JSON Schema."""
    root = dataclass_schema(TrackerDoc)
    phase = dataclass_schema(PhaseDoc)
    step = dataclass_schema(StepDoc)
    step["properties"]["gates"] = {"type": "array", "items": {"$ref": "#/$defs/gate"},
                                   "description": step["properties"]["gates"].get("description", "")}
    phase["properties"]["steps"] = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    root["properties"]["phases"] = {"type": "array", "items": {"$ref": "#/$defs/phase"}}
    # promql gates need a url of their own when the tracker names no Prometheus server.
    root["if"] = {"not": {"required": ["prometheus"]}}
    root["then"] = {"properties": {"phases": {"items": {"properties": {"steps": {"items": {"properties": {
        "gates": {"items": {"properties": {"promql": {"required": ["url"]}}}}}}}}}}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"qualitygate-exporter tracker config ({__version__})",
        **root,
        "$defs": {"phase": phase, "step": step, "gate": gate_schema()},
    }
