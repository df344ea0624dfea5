"""`json_file` gates: a number read from a JSON file with a json_path (see exporter.probes.jsonpath)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from exporter.config.fields import FilePath, opt
from exporter.probes import jsonpath
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path, read_bytes


@dataclass(frozen=True)
class JSONFileSpec:
    """Options of a `json_file` gate."""

    path: FilePath = opt(required=True, doc="The JSON file.")
    json_path: str = opt(required=True, doc="Path of one number in it, e.g. $.totals.percent or a.b[0].c.",
                         check=jsonpath.check)


async def probe(spec: JSONFileSpec, ctx: ProbeContext) -> Measurement:
    """Read the file; the number at json_path is the value."""
    shown = display_path(spec.path, ctx.base_dir)
    return Measurement({"value": await asyncio.to_thread(read_number, spec.path, spec.json_path, shown)})


def read_number(path: str, json_path: str, shown: str | None = None) -> float:
    """The number at `json_path` in a JSON file; ProbeError if the file, JSON or path is wrong."""
    name = shown or path
    try:
        doc = json.loads(read_bytes(path, name))
    except ValueError as exc:
        raise ProbeError(f"{name}: not valid JSON ({exc})") from None
    try:
        return jsonpath.number(doc, json_path)
    except KeyError as exc:
        raise ProbeError(f"{name}: json_path {json_path}: {exc.args[0]} not found") from None
    except ValueError as exc:
        raise ProbeError(f"{name}: {exc}") from None


KIND = ProbeKind("json_file", JSONFileSpec, probe, ("value",), needs_expect=True,
                 doc="A number in a JSON file meets the expectation.")
