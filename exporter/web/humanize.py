"""Measurements and times in human units, for the status page: `212 ms < 500 ms`, `5 min ago`.

Pure functions of a gate and its measurements: no HTTP, no templates.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from exporter.config.expect import Condition
from exporter.config.model import Gate
from exporter.config.units import display_unit, gate_sentence, measurement_kind, pair, show

DEFAULT_EXPECTATION = {
    "http": "a valid status code",
    "tcp": "a connection",
    "command": "exit code 0",
    "junit": "no failures or errors",
    "file": "the file to exist",
    "manual": "a fresh attestation",
}


def written_unit(cond: Condition) -> str | None:
    """The unit as written at the end of the condition (`%`, `ms`, `s`, `m`, `h`, `d`), if any."""
    return cond.unit or None


def format_in(value: float, unit: str | None, exact: bool = False) -> str:
    """A number in a unit (exporter.config.units.show, the one formatter): `85 %`, `212 ms`, `1.5 MiB`."""
    return show(value, unit, exact)


@dataclass(frozen=True)
class Check:
    """One expect condition against what was measured: `response_time 212 ms is below 500 ms`."""

    measurement: str
    shown: str | None  # the measured value in the condition's unit; None when not measured
    op: str
    target: str
    met: bool | None  # None when nothing was measured
    sentence: str = ""  # the formatter's sentence (exporter.config.units), as every other output says it

    @property
    def text(self) -> str:
        """The whole check as one line: `coverage 85 % is at least 85 %`, or `expects >= 85 %`."""
        if self.shown is None:
            name = "" if self.measurement == "value" else self.measurement + " "
            return f"expects {name}{self.op} {self.target}"
        return self.sentence


def checks(gate: Gate, measurements: Mapping[str, float]) -> list[Check]:
    """Each expect condition of a gate with the measured value in human units."""
    out = []
    for cond in gate.expect:
        kind = measurement_kind(gate, cond.measurement)
        got = measurements.get(cond.measurement)
        if got is None:
            target = show(cond.threshold, display_unit(kind, written_unit(cond), cond.threshold), exact=True)
            out.append(Check(cond.measurement, None, cond.op, target, None))
            continue
        shown, target = pair(kind, cond, got)
        out.append(Check(cond.measurement, shown, cond.op, target, cond.holds(got), gate_sentence(gate, cond, got)))
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
