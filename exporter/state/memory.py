"""What the exporter knows about each gate: last result, counters, recent history, uptime buckets."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from exporter.model import ERROR, FAIL, PASS, PENDING, Result
from exporter.state import untracked
from exporter.state.buckets import Buckets
from exporter.state.ring import ResultRing

HISTORY = 50  # recent evaluations kept per gate for /api/gates/{id}

# Uptime is counted in buckets that coarsen with age, so that 30 days of a 15 s gate stay small:
# 5-minute buckets for the last 2 hours, hourly for the last 2 days, daily beyond.
_TIERS = ((2 * 3600, 300), (2 * 86400, 3600), (None, 86400))


def bucket_start(ts: float, now: float) -> int:
    """The start of the bucket a timestamp belongs to, given how old it is at `now`."""
    age = now - ts
    for limit, size in _TIERS:
        if limit is None or age < limit:
            return int(ts // size * size)
    raise AssertionError


@dataclass
class GateState:
    """Mutable per-gate state, updated by the scheduler only."""

    result: Result | None = None
    last_pass: float | None = None
    since: float | None = None  # when the current status began
    counts: dict[str, int] = field(default_factory=lambda: {PASS: 0, FAIL: 0, ERROR: 0})
    history: ResultRing = field(default_factory=lambda: ResultRing(HISTORY))
    buckets: Buckets = field(default_factory=Buckets)  # bucket start -> (passed, total), in flat columns

    def __post_init__(self) -> None:
        if not isinstance(self.buckets, Buckets):  # a mapping of start -> [passed, total] (peers, tests)
            self.buckets = Buckets.of(self.buckets)

    @property
    def status(self) -> str:
        """pass | fail | error | pending."""
        return self.result.outcome if self.result else PENDING

    def uptime(self, window: float, now: float) -> tuple[int, int]:
        """(passed, total) evaluations whose bucket starts within the window."""
        return self.buckets.since(now - window)

    def compact(self, now: float, keep: float) -> None:
        """Merge aged buckets into coarser ones and drop those older than `keep` seconds."""
        self.buckets.compact(now, keep)  # bucket_start(start, now) of each, as packs.coarsen does it


class State:
    """Every gate's state, keyed by gate id."""

    def __init__(self) -> None:
        self.gates: dict[str, GateState] = {}

    def get(self, gate_id: str) -> GateState:
        """The state of a gate, created pending on first use."""
        st = self.gates.get(gate_id)
        if st is None:
            st = self.gates[gate_id] = GateState()
        return st

    def retain(self, gate_ids: Iterable[str]) -> None:
        """Forget gates that are no longer configured (storage keeps them for a grace period)."""
        keep = set(gate_ids)
        for gid in [g for g in self.gates if g not in keep]:
            del self.gates[gid]

    def record(self, result: Result) -> GateState:
        """Apply one evaluation result."""
        st = self.get(result.gate)
        previous = st.status
        if result.evidence is not None:
            untracked.untrack(result.evidence)
        untracked.untrack(result)  # it lives until the next one: long enough to reach the GC's oldest generation
        st.result = result
        st.counts[result.outcome] += 1
        st.history.append(result)
        if result.outcome != previous:
            st.since = result.started
        if result.passed:
            st.last_pass = result.started
        st.buckets.add(bucket_start(result.started, result.started), int(result.passed))
        return st

    def pass_ratio(self, gate_id: str, window: float, now: float) -> tuple[int, int]:
        """(passed, total) evaluations of a gate over the window (the History protocol)."""
        st = self.gates.get(gate_id)
        return st.uptime(window, now) if st else (0, 0)

    def latest_attestation(self, gate_id: str) -> object | None:
        """No attestations without storage; the storage-backed state overrides this."""
        return None

    def compact(self, keep: float, now: float | None = None) -> None:
        """Coarsen and prune every gate's uptime buckets."""
        now = time.time() if now is None else now
        for st in self.gates.values():
            st.compact(now, keep)
