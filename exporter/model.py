"""The result of one gate evaluation: the unit every later stage (state, metrics, API, reports) reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PASS, FAIL, ERROR, PENDING = "pass", "fail", "error", "pending"
OUTCOMES = (PASS, FAIL, ERROR)
STATUSES = (*OUTCOMES, PENDING)  # what a gate can show: an outcome, or none yet


def finite(value: float | None) -> float | None:
    """A number for JSON (RFC 8259 has no NaN or infinity): non-finite values are null."""
    return value if value is None or math.isfinite(value) else None


def finite_values(values: dict[str, float]) -> dict[str, float | None]:
    """Measurements for JSON, non-finite ones null."""
    return {k: finite(v) for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Result:
    """One evaluation of one gate."""

    gate: str
    outcome: str  # pass | fail | error
    started: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    measurements: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def value(self) -> float | None:
        """The primary measurement (gate_value), if one was made."""
        return self.measurements.get("value")

    @property
    def passed(self) -> bool:
        """Whether the gate passed."""
        return self.outcome == PASS

    def to_json(self) -> dict[str, object]:
        """The JSON form used by the API and reports (strict JSON: non-finite numbers are null)."""
        return {
            "outcome": self.outcome,
            "started": self.started,
            "duration": finite(self.duration),
            "value": finite(self.value),
            "measurements": finite_values(self.measurements),
            "message": self.message,
        }
