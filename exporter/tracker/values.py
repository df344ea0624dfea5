"""A gate's value and verdict in a tracker document, in the one formatter's words (exporter.config.units).

`render` and `render --in-place` read a status document (/api/progress/status), not results: a
gate's entry names its kind, its expect texts, its value and its measurements. With the config's
gate at hand its sentences are exactly the ones `check`, the logs and the status page say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exporter.config import units
from exporter.config.expect import Condition, parse_condition
from exporter.config.model import Gate


def pct(ratio: Any) -> str:
    """A completion figure: `66.7%` (one decimal, never "100%" short of all, never "0%" above none)."""
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        return "?"
    return units.percent(value)


def _conditions(entry: Mapping[str, Any], gate: Gate | None) -> list[Condition]:
    if gate is not None:
        return list(gate.expect)
    out = []
    for text in entry.get("expect") or []:
        try:
            out.append(parse_condition(str(text)))
        except ValueError:
            continue  # a document's expect the parser cannot read: shown as written in the claim
    return out


def _measured(entry: Mapping[str, Any]) -> dict[str, float]:
    """The entry's finite measurements, its `value` among them."""
    raw = entry.get("measurements")
    out: dict[str, float] = {}
    for name, v in (raw.items() if isinstance(raw, Mapping) else ()):
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[str(name)] = float(v)
    value = entry.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool):
        out.setdefault("value", float(value))
    return out


def _custom(entry: Mapping[str, Any], kind: str, m: Mapping[str, float]) -> bool:
    """An http or command value read from the target (json_path, a regex), as units.document_value tells it."""
    value = m.get("value")
    if value is None:
        return False
    return (kind == "http" and m.get("response_time") != value) or (kind == "command" and m.get("exit_code") != value)


def sentences(entry: Mapping[str, Any], gate: Gate | None, failing: bool | None = None) -> list[str]:
    """Each measured condition of the gate as the formatter says it: `coverage 71.4 % is below 85 %`.

    `failing` keeps only the conditions that do not hold (True) or only those that do (False).
    """
    m = _measured(entry)
    kind = gate.kind if gate is not None else str(entry.get("kind") or "")
    out = []
    for cond in _conditions(entry, gate):
        got = m.get(cond.measurement)
        if got is None or (failing is not None and cond.holds(got) == failing):
            continue
        out.append(units.gate_sentence(gate, cond, got) if gate is not None
                   else units.sentence(kind, cond, got, _custom(entry, kind, m)))
    return out


def named_value(entry: Mapping[str, Any], gate: Gate | None) -> str:
    """The gate's value alone with its name, `value 12 ms`, `coverage 71.4 %`; empty when none was measured."""
    m = _measured(entry)
    value = m.get("value")
    if value is None:
        return ""
    kind = gate.kind if gate is not None else str(entry.get("kind") or "")
    shown = units.value_text(gate, value) if gate is not None else units.document_value({**entry, "value": value})
    return f"{units.name_of(kind, 'value')} {shown}"
