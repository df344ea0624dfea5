"""`json_file` gates: a number read from a JSON file with a json_path (see exporter.probes.jsonpath)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import BinaryIO

from exporter.config.fields import opt
from exporter.probes import jsonpath, offload
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import MAX_REPORT
from exporter.probes.reading import open_regular, read_limited
from exporter.probes.sources import ReportSource, measure, parse_bytes


@dataclass(frozen=True, slots=True)
class JSONFileSpec(ReportSource):
    """Options of a `json_file` gate."""

    json_path: str = opt(required=True, doc="Path of one number in it, e.g. $.totals.percent or a.b[0].c.",
                         check=jsonpath.check)


async def probe(spec: JSONFileSpec, ctx: ProbeContext) -> Measurement:
    """Read the file (or the fetched or pushed document); the number at json_path is the value."""
    return await measure(spec, ctx, parse)


def parse(spec: JSONFileSpec, stream: BinaryIO, name: str) -> Measurement:
    """The number at the spec's json_path in a JSON document read from a stream."""
    # A large document is decoded in a worker process (probes/offload.py), a small one right here.
    return Measurement({"value": offload.run(number_of, stream, spec.json_path, name)})


def number_of(stream: BinaryIO, json_path: str, name: str) -> float:
    """The number at `json_path` in a JSON document read from a stream."""
    return number_in(read_limited(stream, MAX_REPORT, name), json_path, name)


def read_number(path: str, json_path: str, shown: str | None = None) -> float:
    """The number at `json_path` in a JSON file; ProbeError if the file, JSON or path is wrong."""
    name = shown or path
    with open_regular(path, name) as fh:
        return number_in(read_limited(fh, MAX_REPORT, name), json_path, name)


def number_in(data: bytes, json_path: str, name: str) -> float:
    """The number at `json_path` in a JSON document's bytes."""
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise ProbeError(f"{name}: not valid JSON ({exc})") from None
    try:
        return jsonpath.number(doc, json_path)
    except KeyError as exc:
        raise ProbeError(f"{name}: json_path {json_path}: {exc.args[0]} not found") from None
    except ValueError as exc:
        raise ProbeError(f"{name}: {exc}") from None


KIND = ProbeKind("json_file", JSONFileSpec, probe, ("value",), needs_expect=True,
                 doc="A number in a JSON file meets the expectation.",
                 parse_report=parse_bytes(parse))
