"""What every probe kind shares: its result type, its errors, and the context it runs in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

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


ProbeFn = Callable[[Any, ProbeContext], Awaitable[Measurement]]


@dataclass(frozen=True)
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
