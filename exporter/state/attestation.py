"""What an attestation may say: its value (written as `expect` numbers are), its note and its author.

The rules live here, below both the HTTP endpoint and the `attest` command, so that a value, a
note or a name is judged the same way whichever way it arrives, and before anything is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exporter.config.expect import UNITS, Condition, format_number

if TYPE_CHECKING:
    from exporter.config.model import Config, Gate

MAX_NOTE = 1000  # characters
MAX_BY = 100
MAX_VALUE_TEXT = 64  # a value is a number and a unit: anything longer is not one
BODY_FIELDS = ("value", "note", "by")
FAMILIES = {"%": "ratio", "ms": "duration", "s": "duration", "m": "duration", "h": "duration", "d": "duration"}
# As expect writes numbers, ASCII only: "١٢" is not twelve here.
_VALUE = re.compile(r"\s*(?P<number>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
                    r"\s*(?P<unit>%|ms|s|m|h|d)?\s*", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")  # tabs and newlines are fine in a note


class AttestationError(ValueError):
    """An attestation refused: the message says why, `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reading:
    """A value as written: its number in base units (seconds, ratio 0..1) and the unit it was written with."""

    value: float
    unit: str  # "" for a plain number or true/false
    written: str  # as the user wrote it, normalised: `95%`, `350ms`, `true`, `12`

    @property
    def family(self) -> str | None:
        """ratio | duration, or None for a plain number."""
        return FAMILIES.get(self.unit)


def parse_value(text: str) -> Reading:
    """A value as `expect` writes numbers: `12`, `95%`, `350ms`, `2h`, `true`, `false`."""
    if len(text) > MAX_VALUE_TEXT:
        raise AttestationError(f"invalid value {text[:20]!r}...: longer than {MAX_VALUE_TEXT} characters")
    t = text.strip()
    if t.lower() in ("true", "false"):
        return Reading(1.0 if t.lower() == "true" else 0.0, "", t.lower())
    m = _VALUE.fullmatch(text)
    if m is None:
        raise AttestationError(f"invalid value {text!r}: want a number with an optional unit "
                               "(% ms s m h d, as in expect), true or false")
    unit = m["unit"] or ""
    value = float(m["number"]) * UNITS.get(unit, 1.0)
    if not math.isfinite(value):
        raise AttestationError(f"invalid value {text!r}: must be finite")
    return Reading(value, unit, m["number"] + unit)


def reading_from_json(raw: object) -> Reading:
    """The `value` of a request body: a JSON number, true/false, or a string written as on the command line."""
    if isinstance(raw, bool):
        return Reading(1.0 if raw else 0.0, "", "true" if raw else "false")
    if isinstance(raw, (int, float)):
        value = float(raw)
        if not math.isfinite(value):
            raise AttestationError("value must be finite")
        return Reading(value, "", format_number(value))
    if isinstance(raw, str):
        return parse_value(check_text("value", raw, MAX_VALUE_TEXT) or "")
    raise AttestationError('value must be a number, true, false, or a string with a unit such as "95%"')


def value_conditions(conditions: Sequence[Condition]) -> list[Condition]:
    """The conditions on the attested value (not on its age)."""
    return [c for c in conditions if c.measurement == "value"]


def understand(reading: Reading, conditions: Sequence[Condition]) -> float:
    """The value to store, judged against the gate's expect; AttestationError (400) when ambiguous.

    For an expect with a unit, a value without one could mean two things (42 for `>= 90%`: 42 %,
    or 4200 %?), so it is refused, as is a value whose unit measures something else.
    """
    with_unit = [c for c in value_conditions(conditions) if c.unit]
    if not with_unit:
        return reading.value
    cond = with_unit[0]
    wanted = FAMILIES[cond.unit]
    if reading.family is None:
        example = reading.written if reading.written not in ("true", "false") else "95"
        raise AttestationError(f"{reading.written} is ambiguous for {cond.text!r}: write it with its unit, "
                               f"e.g. {example}{cond.unit}")
    if reading.family != wanted:
        raise AttestationError(f"{reading.written} is a {reading.family}, but {cond.text!r} is about a {wanted}: "
                               f"write it in {cond.unit}")
    return reading.value


def understood_text(reading: Reading, conditions: Sequence[Condition]) -> str:
    """How the value was understood, for the answer: `95%`, or `95% (0.95)` when expect has no unit."""
    if reading.unit and not any(c.unit for c in value_conditions(conditions)):
        return f"{reading.written} ({format_number(reading.value)})"
    return reading.written


def format_value(value: float, conditions: Sequence[Condition]) -> str:
    """A stored value in the unit the gate's expect uses (`95%`), else as a plain number."""
    unit = next((c.unit for c in value_conditions(conditions) if c.unit), "")
    if not math.isfinite(value):
        return "no value"
    if unit:
        return format_number(round(value / UNITS[unit], 9)) + unit
    return format_number(value)


def check_text(key: str, raw: object, limit: int) -> str | None:
    """A text field, stripped; AttestationError unless it is valid Unicode, short and free of control characters."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise AttestationError(f"{key} must be a string")
    if len(raw) > limit:
        raise AttestationError(f"{key} is longer than {limit} characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" in JSON) is no character: SQLite and every reader would choke on it.
        raise AttestationError(f"{key} is not valid Unicode (it holds a lone surrogate)") from None
    if _CONTROL.search(raw) or (key != "note" and ("\n" in raw or "\t" in raw)):
        raise AttestationError(f"{key} contains control characters")
    return raw.strip()


def check_body(doc: object) -> tuple[Reading, str, str | None]:
    """(value as written, note, by) from a JSON request body; AttestationError (400) on anything else."""
    if not isinstance(doc, Mapping):
        raise AttestationError('body must be a JSON object such as {"value": 1, "note": "..."}')
    unknown = sorted(str(k) for k in set(doc) - set(BODY_FIELDS))
    if unknown:
        raise AttestationError(f"unknown field {unknown[0][:100]!r} (allowed: {', '.join(BODY_FIELDS)})")
    if "value" not in doc:
        raise AttestationError("missing field 'value'")
    note = check_text("note", doc.get("note"), MAX_NOTE) or ""
    by = check_text("by", doc.get("by"), MAX_BY)
    return reading_from_json(doc["value"]), note, by


def manual_gate(configs: Sequence[Config], gate_id: str, tracker: str | None) -> tuple[Config, Gate]:
    """The tracker config and manual gate an attestation is for; AttestationError (404/409/400) otherwise."""
    if tracker is not None:
        configs = [c for c in configs if c.tracker == tracker]
        if not configs:
            raise AttestationError(f"unknown tracker {tracker[:100]!r}", 404)
    found = [(c, g) for c in configs for g in [c.gate(gate_id)] if g is not None]
    if not found:
        where = f" in tracker {configs[0].tracker!r}" if len(configs) == 1 else ""
        raise AttestationError(f"unknown gate {gate_id[:100]!r}{where}", 404)
    if len(found) > 1:
        raise AttestationError(f"gate {gate_id!r} exists in several trackers "
                               f"({', '.join(c.tracker for c, _ in found)}): name one with tracker")
    config, gate = found[0]
    if gate.kind != "manual":
        raise AttestationError(f"gate {gate_id!r} is a {gate.kind} gate; only manual gates take attestations", 409)
    return config, gate
