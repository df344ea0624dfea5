"""The one formatter: a gate's values and its verdict in human units, for every output.

The status page, `check`, the CI reports, the logs, `render` and the alert descriptions all show a
value the way this module writes it: in the unit of the gate's `expect` (`85 %`, `500 ms`, `1 d`),
else in the unit its measurement is best read in (ratios as percent, times in ms/s/min/h/d).
Sentences have one form, `NAME VALUE VERB THRESHOLD`: `coverage 71.4 % is below 85 %` when a
condition fails, `response_time 27 ms is below 500 ms` when it holds. Machine outputs (JSON
`value`, `gate_value`) keep base units in their own fields and never go through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from exporter.config.expect import UNITS, Condition, format_number, parse_condition

if TYPE_CHECKING:  # config.model loads every probe kind: `qualitygate push` formats without them
    from exporter.config.model import Gate

# The unit families a value is exported with (gate_info{unit}, docs/alerting.md): the alert
# templates pick humanizePercentage, humanizeDuration or a plain number by it.
PERCENT, SECONDS, BYTES, NUMBER = "percent", "seconds", "bytes", "number"
FAMILIES = (PERCENT, SECONDS, BYTES, NUMBER)

TIME_MEASUREMENTS = frozenset({"response_time", "duration", "connect_time", "age"})
COUNT_MEASUREMENTS = frozenset({"status", "exit_code", "tests", "failures", "errors", "skipped", "warnings", "notes",
                                "days_left"})
# What a kind's primary `value` is called in a sentence: "coverage 71.4 %", not "value 0.714".
VALUE_NAMES = {"coverage": "coverage", "junit": "pass_rate", "uptime": "uptime", "sarif": "results",
               "tcp": "connect_time", "file": "age", "tls": "expires_in"}
UNIT_NAMES = {"%": "%", "ms": "ms", "s": "s", "m": "min", "h": "h", "d": "d"}
FAIL_VERBS = {">=": "is below", ">": "is not above", "<=": "is above", "<": "is not below", "==": "is not",
              "!=": "must not be"}
PASS_VERBS = {">=": "is at least", ">": "is above", "<=": "is at most", "<": "is below", "==": "is", "!=": "is not"}


def _custom_value(gate: Gate) -> bool:
    """Whether an http or command gate's value is a number read from the target (json_path, a regex)."""
    spec = gate.spec
    if gate.kind == "http":
        return bool(getattr(spec, "json_path", None) or getattr(spec, "body_regex", None))
    return gate.kind == "command" and bool(getattr(spec, "value_regex", None))


def measurement_kind(gate: Gate, measurement: str) -> str:
    """time | ratio | bytes | count | number: how a measurement of this gate is best shown."""
    if measurement in ("value", "delta"):
        return kind_of_value(gate.kind, _custom_value(gate))
    if measurement in TIME_MEASUREMENTS:
        return "time"
    if measurement == "size":
        return "bytes"
    if measurement in COUNT_MEASUREMENTS:
        return "count"
    return "number"


def kind_of_value(kind: str, custom: bool = False) -> str:
    """How a probe kind's primary value is best shown (custom: read from the target, a plain number)."""
    if kind in ("coverage", "junit", "uptime"):
        return "ratio"
    if kind in ("tcp", "file", "tls") or (kind == "http" and not custom):
        return "time"
    if kind == "command" and not custom:
        return "count"
    if kind == "sarif":
        return "count"
    return "number"


def family(gate: Gate, measurement: str = "value") -> str:
    """percent | seconds | bytes | number: the unit family of a gate's measurement, as exported."""
    written = next((c.unit for c in gate.expect if c.measurement == measurement and c.unit), "")
    return family_of(measurement_kind(gate, measurement), written)


def family_of(kind: str, written: str = "") -> str:
    """The family of a measurement kind, the unit written in `expect` first."""
    if written:
        return PERCENT if written == "%" else SECONDS
    return {"ratio": PERCENT, "time": SECONDS, "bytes": BYTES}.get(kind, NUMBER)


def display_unit(kind: str, written: str | None, scale: float | None) -> str | None:
    """The unit to show a value in: as written in expect, else chosen from the measurement and its size."""
    if written:
        return written
    if kind == "ratio":
        return "%"
    if kind == "time":
        return time_unit(abs(scale) if scale is not None else 0.0)
    if kind == "bytes":
        return "bytes"
    return None


def time_unit(seconds: float) -> str:
    """The unit a duration reads best in: ms under 1 s, s under 2 min, min under 2 h, h under 2 d, else d."""
    for limit, unit in ((1, "ms"), (120, "s"), (7200, "m"), (172800, "h")):
        if seconds < limit:
            return unit
    return "d"


def show(value: float, unit: str | None, exact: bool = False, digits: int = 3) -> str:
    """A number in a unit: `71.4 %`, `27 ms`, `1.5 MiB`, `12`; `exact` renders thresholds as written.

    `digits` are the significant digits of times and plain fractions (more when two values would
    otherwise read the same).
    """
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    if unit == "bytes":
        return _bytes(value)
    if unit in UNITS:
        scaled = value / UNITS[unit]
        if exact:
            text = format_number(round(scaled, 9))
        elif unit == "%":
            text = _percent_number(value, max(1, digits - 2))
        else:
            text = _significant(scaled, digits)
        return f"{text} {UNIT_NAMES[unit]}"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format_number(value) if exact else _significant(value, max(digits, 6))


def percent(ratio: float, decimals: int = 1) -> str:
    """A ratio as a percentage without a space (badges, headings): `66.7%`, `100%`.

    Rounded (2 of 3 is 66.7%, not 66%), except at the ends: 199 of 200 is never "100%" and 1 of
    1,000,000 never "0%".
    """
    return _percent_number(ratio, decimals) + "%"


def _percent_number(ratio: float, decimals: int) -> str:
    value = float(ratio) * 100
    text = f"{value:.{decimals}f}"
    # The ends are claims ("all", "none"): a ratio short of them is cut towards the middle instead.
    # The inner round() keeps 0.29 * 100 = 28.999... from being cut to 28.
    scale = 10**decimals
    if float(text) >= 100 and ratio < 1:
        text = f"{math.floor(round(value * scale, 6)) / scale:.{decimals}f}"
    elif float(text) <= 0 < ratio:
        text = f"{math.ceil(round(value * scale, 6)) / scale:.{decimals}f}"
    return _trim(text)


def _trim(text: str) -> str:
    """`85.0` -> `85`, `71.40` -> `71.4`; integers and exponents untouched."""
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _significant(v: float, digits: int) -> str:
    """`digits` significant digits, never in exponent form below 1e6: 27, 1.34, 212, 0.0421."""
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e6:
        return f"{v:.4g}"
    places = max(0, digits - 1 - math.floor(math.log10(a)))
    return _trim(f"{v:.{places}f}")


def _bytes(v: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{int(v)} bytes" if unit == "bytes" else f"{_significant(v, 3)} {unit}"
        v /= 1024
    raise AssertionError


def name_of(kind: str, measurement: str) -> str:
    """What a measurement is called in a sentence: a kind's `value` by what it is (coverage, uptime)."""
    return VALUE_NAMES.get(kind, "value") if measurement == "value" else measurement


def pair(kind: str, cond: Condition, value: float) -> tuple[str, str]:
    """A measured value and the condition's threshold, both in the condition's unit, told apart.

    A time far below the written unit is shown in its own (`12 h` against `1 d`). When the two
    would read the same but differ (84.96 % against 85 %), more digits are shown.
    """
    unit = display_unit(kind, cond.unit or None, cond.threshold)
    value_unit = unit
    if kind == "time" and unit in UNITS and 0 < abs(value) / UNITS[unit] < 1:
        value_unit = display_unit(kind, None, value)
    target = show(cond.threshold, unit, exact=True)
    shown = show(value, value_unit)
    digits = 3
    while value != cond.threshold and value_unit == unit and shown == target and digits < 9:
        digits += 1
        shown = show(value, value_unit, digits=digits)
    return shown, target


def sentence(kind: str, cond: Condition, value: float, custom: bool = False) -> str:
    """One condition against its measured value: `coverage 71.4 % is below 85 %` (the fail or the pass form)."""
    mkind = kind_of_value(kind, custom) if cond.measurement in ("value", "delta") else _named_kind(cond.measurement)
    shown, target = pair(mkind, cond, value)
    verb = (PASS_VERBS if cond.holds(value) else FAIL_VERBS)[cond.op]
    return f"{name_of(kind, cond.measurement)} {shown} {verb} {target}"


def _named_kind(measurement: str) -> str:
    if measurement in TIME_MEASUREMENTS:
        return "time"
    if measurement == "size":
        return "bytes"
    return "count" if measurement in COUNT_MEASUREMENTS else "number"


def gate_sentence(gate: Gate, cond: Condition, value: float) -> str:
    """`sentence` for a gate of the config."""
    return sentence(gate.kind, cond, value, _custom_value(gate))


def verdict(gate: Gate, values: Mapping[str, float]) -> str:
    """Every measured `expect` condition of a gate, in its sentence form, joined by `; `."""
    return "; ".join(gate_sentence(gate, c, values[c.measurement]) for c in gate.expect if c.measurement in values)


def value_text(gate: Gate, value: float | None, measurement: str = "value") -> str:
    """One measurement alone in the unit of the gate's expect on it (else its best unit), or `—`."""
    if value is None:
        return "—"
    kind = measurement_kind(gate, measurement)
    written = next((c.unit for c in gate.expect if c.measurement == measurement and c.unit), None)
    return _alone(kind, written, value)


def _alone(kind: str, written: str | None, value: float) -> str:
    unit = display_unit(kind, written, value)
    if kind == "time" and unit in UNITS and 0 < abs(value) / UNITS[unit] < 1:
        unit = display_unit(kind, None, value)
    return show(value, unit)


def document_value(g: Mapping[str, object]) -> str:
    """The `value` of a gate of the status document (/api/progress/status) in human units, or ``.

    The document names the kind and the expect texts; an http gate's value that is not its
    response time was read from the body (json_path, body_regex): a plain number.
    """
    raw = g.get("value")
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return "" if raw is None else str(raw)
    value = float(raw)
    kind = str(g.get("kind") or "")
    measurements = g.get("measurements")
    m = measurements if isinstance(measurements, Mapping) else {}
    custom = (kind == "http" and m.get("response_time") != raw) or (kind == "command" and m.get("exit_code") != raw)
    written = None
    expect = g.get("expect")
    for text in expect if isinstance(expect, Sequence) and not isinstance(expect, str) else ():
        try:
            cond = parse_condition(text)
        except ValueError:
            continue
        if cond.measurement == "value" and cond.unit:
            written = cond.unit
            break
    return _alone(kind_of_value(kind, custom), written, value)
