"""The result of one gate evaluation: the unit every later stage (state, metrics, API, reports) reads."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field

PASS, FAIL, ERROR, PENDING = "pass", "fail", "error", "pending"
PROBE, PUSH, ATTESTATION = "probe", "push", "attestation"  # where a result's evidence came from
OUTCOMES = (PASS, FAIL, ERROR)
STATUSES = (*OUTCOMES, PENDING)  # what a gate can show: an outcome, or none yet


def rfc3339(ts: float | None) -> str | None:
    """Unix time -> RFC 3339 in UTC (None stays None): the one time format of documents and the state file."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def finite(value: float | None) -> float | None:
    """A number for JSON (RFC 8259 has no NaN or infinity): non-finite values are null."""
    return value if value is None or math.isfinite(value) else None


def finite_values(values: dict[str, float]) -> dict[str, float | None]:
    """Measurements for JSON, non-finite ones null."""
    return {k: finite(v) for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a result was judged on: a probe made now, a pushed report, or a person's attestation.

    Only the fields that apply are set. Times are Unix seconds; `expires_at` is when the evidence
    stops counting (at + max_age), None when it never lapses (a probe measures afresh each time).
    """

    kind: str  # probe | push | attestation
    at: float  # when the evidence was made: probe time, push acceptance, attestation
    commit: str | None = None
    branch: str | None = None
    run_url: str | None = None
    run_id: str | None = None
    by: str | None = None
    note: str | None = None
    expires_at: float | None = None
    digest: str | None = None  # sha256 (hex) of a pushed report

    @property
    def outside(self) -> bool:
        """Evidence from outside the exporter (pushed or attested), as opposed to its own probe."""
        return self.kind != PROBE


@dataclass(frozen=True, slots=True)
class Result:
    """One evaluation of one gate."""

    gate: str
    outcome: str  # pass | fail | error
    started: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    measurements: dict[str, float] = field(default_factory=dict)
    message: str = ""
    evidence: Evidence | None = None
    # A gate that takes its evidence from outside (manual, push) and has never had any accepted:
    # failing, but not a measured failure (gate_awaiting_evidence, the "Awaiting evidence" list).
    awaiting: bool = False

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
