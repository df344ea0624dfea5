"""What every probe kind shares: its result type, its errors, and the context it runs in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from exporter.model import Evidence

if TYPE_CHECKING:
    import aiohttp


class ProbeError(Exception):
    """No measurement could be made: the evaluation's outcome is `error`."""


@dataclass
class Measurement:
    """What a probe measured. `ok` is the kind's default pass condition; `message` says why not."""

    values: dict[str, float] = field(default_factory=dict)
    ok: bool = True
    message: str = ""
    # What it was judged on, for gates evidenced from outside (manual: the attestation; push: the
    # pushed run); None there means no accepted evidence ever. Probe kinds leave it None (evaluate
    # records kind=probe at the evaluation's time).
    evidence: Evidence | None = None

    @property
    def value(self) -> float | None:
        """The primary measurement, if one was made."""
        return self.values.get("value")


class History(Protocol):
    """Read access to stored evaluations and attestations (uptime and manual gates)."""

    def pass_ratio(self, gate_id: str, window: float, now: float) -> tuple[int, int]:
        """(passed, total) evaluations of a gate over the last `window` seconds."""

    def latest_attestation(self, gate_id: str) -> Any | None:
        """The newest attestation of a manual gate, with .value, .note, .by, .at; or None."""


@dataclass(frozen=True, slots=True)
class PushRecord:
    """The evidence a push-sourced gate is judged on: the latest pushed run that counts.

    Made by whoever stores pushes (the evidence endpoint) from the kind's `parse_report`, and for
    several reports of one run (same run_id) from `ProbeKind.combine` of their measurements.
    """

    at: float  # when the run's latest push was accepted, seconds since the epoch
    values: Mapping[str, float]  # the measurements, as parse_report (or combine) returned them
    ok: bool = True  # the kind's default pass condition, as parse_report (or combine) judged it
    message: str = ""
    branch: str | None = None
    commit: str | None = None
    run_url: str | None = None
    run_id: str | None = None
    digest: str | None = None  # sha256 of the report (hex)


@dataclass
class ProbeContext:
    """Everything a probe may use besides its own spec. Built by the scheduler."""

    gate_id: str
    timeout: float
    session: Callable[[bool], aiohttp.ClientSession] | None = None  # (insecure_tls) -> session
    prometheus_url: str | None = None
    history: History | None = None
    uptime_window: float = 30 * 86400.0  # the tracker's uptime_window: default window of uptime gates
    now: Callable[[], float] | None = None
    base_dir: str | None = None  # the config file's folder: default cwd of `command` gates
    # Push-sourced report gates: evidence(gate_id) is the latest push that counts for that gate of
    # this context's tracker (from the gate's `branch`, when it names one), or None if there never
    # was one. None here (no state to read, e.g. `check` without --from) is judged as "no evidence".
    evidence: Callable[[str], PushRecord | None] | None = None


ProbeFn = Callable[[Any, ProbeContext], Awaitable[Measurement]]


@dataclass(frozen=True, slots=True)
class ProbeKind:
    """A probe kind: its config key, spec dataclass, probe function and measurements."""

    name: str
    spec: type
    probe: ProbeFn
    measurements: tuple[str, ...]
    needs_expect: bool = False
    # What a timeout means: the target is down (fail), or we could not measure (error).
    timeout_outcome: str = "error"
    doc: str = ""
    # Report kinds (coverage, junit, json_file, sarif): parse_report(spec, data, name) parses one
    # report's bytes as the kind does for files, returning the Measurement or raising ProbeError
    # with a message that starts with `name` (the push endpoint's 400 answer).
    parse_report: Callable[[Any, bytes, str], Measurement] | None = None
    # Kinds whose reports of one run add up (junit: a suite split over parallel CI jobs): the
    # Measurement of a whole run from its reports' Measurements. None: the run's latest report counts.
    combine: Callable[[list[Measurement]], Measurement] | None = None
