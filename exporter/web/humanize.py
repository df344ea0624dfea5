"""Measurements and times in human units, for the status page: `212 ms < 500 ms`, `5 min ago`.

Pure functions of a gate and its measurements: no HTTP, no templates.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.config.expect import UNITS, Condition, format_number
from exporter.config.model import Gate

TIME_MEASUREMENTS = frozenset({"response_time", "duration", "connect_time", "age"})
COUNT_MEASUREMENTS = frozenset({"status", "exit_code", "tests", "failures", "errors", "skipped"})
DEFAULT_EXPECTATION = {
    "http": "a valid status code",
    "tcp": "a connection",
    "command": "exit code 0",
    "junit": "no failures or errors",
    "file": "the file to exist",
    "manual": "a fresh attestation",
}
_UNIT_NAMES = {"%": "%", "ms": "ms", "s": "s", "m": "min", "h": "h", "d": "d"}


def measurement_kind(gate: Gate, measurement: str) -> str:
    """time | ratio | bytes | count | number: how a measurement of this gate is best shown."""
    if measurement == "value":
        if gate.kind in ("coverage", "junit", "uptime"):
            return "ratio"
        if gate.kind in ("tcp", "file"):
            return "time"
        if gate.kind == "http":
            spec = gate.spec
            return "number" if getattr(spec, "json_path", None) or getattr(spec, "body_regex", None) else "time"
        if gate.kind == "command":
            return "number" if getattr(gate.spec, "value_regex", None) else "count"
        return "number"
    if measurement in TIME_MEASUREMENTS:
        return "time"
    if measurement == "size":
        return "bytes"
    if measurement in COUNT_MEASUREMENTS:
        return "count"
    return "number"


def written_unit(cond: Condition) -> str | None:
    """The unit as written at the end of the condition (`%`, `ms`, `s`, `m`, `h`, `d`), if any."""
    return cond.unit or None


def display_unit(kind: str, written: str | None, scale: float | None) -> str | None:
    """The unit to show a value in: as written in expect, else chosen from the measurement."""
    if written:
        return written
    if kind == "ratio":
        return "%"
    if kind == "time":
        s = abs(scale) if scale is not None else 0.0
        for limit, unit in ((1, "ms"), (120, "s"), (7200, "m"), (172800, "h")):
            if s < limit:
                return unit
        return "d"
    if kind == "bytes":
        return "bytes"
    return None


def format_in(value: float, unit: str | None, exact: bool = False) -> str:
    """A number in a unit: `85.0 %`, `212 ms`, `1.5 MiB`; `exact` renders thresholds as written."""
    if not math.isfinite(value):
        return str(value)
    if unit == "bytes":
        return _bytes(value)
    if unit in UNITS:
        scaled = value / UNITS[unit]
        if exact:
            text = format_number(round(scaled, 9))
        elif unit == "%":
            text = f"{scaled:.1f}"
        else:
            text = _fixed(scaled)
        return f"{text} {_UNIT_NAMES[unit]}"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format_number(value) if exact else _fixed(value)


def _fixed(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v:.4g}"
    digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{v:.{digits}f}"


def _bytes(v: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{int(v)} bytes" if unit == "bytes" else f"{_fixed(v)} {unit}"
        v /= 1024
    raise AssertionError


@dataclass(frozen=True)
class Check:
    """One expect condition against what was measured: `212 ms < 500 ms`."""

    measurement: str
    shown: str | None  # the measured value in the condition's unit; None when not measured
    op: str
    target: str
    met: bool | None  # None when nothing was measured

    @property
    def text(self) -> str:
        """The whole check as one line: `status 200 == 200`, `85.0 % >= 85 %`, or `expects > 1`."""
        name = "" if self.measurement == "value" else self.measurement + " "
        if self.shown is None:
            return f"expects {name}{self.op} {self.target}"
        return f"{name}{self.shown} {self.op} {self.target}"


def checks(gate: Gate, measurements: Mapping[str, float]) -> list[Check]:
    """Each expect condition of a gate with the measured value in human units."""
    out = []
    for cond in gate.expect:
        kind = measurement_kind(gate, cond.measurement)
        unit = display_unit(kind, written_unit(cond), cond.threshold)
        got = measurements.get(cond.measurement)
        value_unit = unit
        if got is not None and kind == "time" and unit in UNITS and 0 < abs(got) / UNITS[unit] < 1:
            value_unit = display_unit(kind, None, got)  # `12.0 h < 1 d` reads better than `0.500 d`
        out.append(Check(cond.measurement, format_in(got, value_unit) if got is not None else None, cond.op,
                         format_in(cond.threshold, unit, exact=True), cond.holds(got) if got is not None else None))
    return out


def measured(gate: Gate, name: str, measurements: Mapping[str, float]) -> str | None:
    """One measurement in human units, or None when it was not made."""
    got = measurements.get(name)
    if got is None:
        return None
    return format_in(got, display_unit(measurement_kind(gate, name), None, got))


def summary(gate: Gate, measurements: Mapping[str, float]) -> str:
    """What was measured, in words, for gates judged by their kind's default (no expect)."""
    m = measurements
    if not m:
        return "—"
    if gate.kind == "http" and "status" in m:
        text = f"HTTP {int(m['status'])}"
        rt = measured(gate, "response_time", m)
        return f"{text} in {rt}" if rt else text
    if gate.kind == "command" and "exit_code" in m:
        text = f"exit code {int(m['exit_code'])}"
        return f"{text}, value {measured(gate, 'value', m)}" if getattr(gate.spec, "value_regex", None) else text
    if gate.kind == "file" and "age" in m:
        return f"{measured(gate, 'size', m) or '?'}, modified {measured(gate, 'age', m)} ago"
    if gate.kind == "tcp":
        return f"connected in {measured(gate, 'connect_time', m) or measured(gate, 'value', m)}"
    if gate.kind == "junit" and "tests" in m:
        return (f"{int(m['tests'])} tests, {int(m.get('failures', 0))} failures, "
                f"{int(m.get('errors', 0))} errors")
    return measured(gate, "value", m) or "—"


def primary_value(gate: Gate, value: float | None) -> str:
    """The primary measurement alone in human units, or "—"."""
    if value is None:
        return "—"
    kind = measurement_kind(gate, "value")
    return format_in(value, display_unit(kind, None, value))


def ago(ts: float | None, now: float) -> str:
    """`just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`, or `never`."""
    if ts is None:
        return "never"
    age = max(0.0, now - ts)
    if age < 5:
        return "just now"
    for limit, size, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if age < limit:
            return f"{int(age // size)} {unit} ago"
    return f"{int(age // 86400)} d ago"


def utc_text(ts: float | None) -> str:
    """`2024-05-01 14:03:12 UTC` (or empty)."""
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
