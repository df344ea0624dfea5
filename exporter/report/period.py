"""`qualitygate report --since DURATION`: what changed over a period, from the stored history.

The facts, gathered once and shown as markdown or HTML by exporter.report.periodfmt: completion then
and now per phase, the gates that regressed and recovered (with when), the blockers with their
age, and the attestations and pushed evidence that expire within the next period (or lapsed in
this one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.config.model import TIERS, Config, Gate
from exporter.model import ERROR, FAIL, PASS, Evidence
from exporter.report.history import REGRESSED, Change, changes, passed_at
from exporter.report.status import BLOCKING_TIERS
from exporter.state.memory import State


@dataclass(frozen=True)
class Completion:
    """One group's completion at the start of the period and now."""

    key: str  # "" for the whole tracker
    label: str
    then: int
    now: int
    total: int


@dataclass(frozen=True)
class Event:
    """One change of one gate, with the gate's words."""

    change: Change
    gate: Gate
    status_now: str


@dataclass(frozen=True)
class Blocker:
    """A critical or important gate that fails or errors now."""

    gate: Gate
    status: str
    since: float | None
    message: str


@dataclass(frozen=True)
class Expiring:
    """Evidence that stops counting within the next period (or stopped within this one)."""

    gate: Gate
    evidence: Evidence

    @property
    def expires_at(self) -> float:
        """When it lapses (never None here)."""
        assert self.evidence.expires_at is not None
        return self.evidence.expires_at


@dataclass
class PeriodReport:
    """Everything `qualitygate report` shows of one tracker."""

    tracker: str
    title: str
    since: float  # the period's length, seconds
    start: float
    now: float
    completion: list[Completion] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    expiring: list[Expiring] = field(default_factory=list)
    unevaluated: int = 0  # gates with no stored evaluation at all

    @property
    def regressed(self) -> list[Event]:
        """Regressions, oldest first."""
        return [e for e in self.events if e.change.kind == REGRESSED]

    @property
    def recovered(self) -> list[Event]:
        """Recoveries, oldest first."""
        return [e for e in self.events if e.change.kind != REGRESSED]


def build(config: Config, state: State, since: float, now: float,
          evidence_of: Callable[[Gate], Evidence | None]) -> PeriodReport:
    """The report of one tracker over [now - since, now]."""
    start = now - since
    rep = PeriodReport(config.tracker, config.title, since, start, now)
    then = {g.id: passed_at(state.gates.get(g.id), start, now) for g in config.gates}
    current = {g.id: (st.status if (st := state.gates.get(g.id)) else "pending") for g in config.gates}
    rep.unevaluated = sum(1 for g in config.gates if g.id not in state.gates or state.gates[g.id].result is None)

    def group(key: str, label: str, gates: list[Gate]) -> Completion:
        return Completion(key, label, sum(then[g.id] for g in gates), sum(current[g.id] == PASS for g in gates),
                          len(gates))

    rep.completion.append(group("", "Overall", list(config.gates)))
    rep.completion += [group(p.id, p.title, list(p.gates)) for p in config.phases]
    for g in config.gates:
        rep.events += [Event(c, g, current[g.id]) for c in changes(g.id, state.gates.get(g.id), start, now)]
    rep.events.sort(key=lambda e: (e.change.lo, e.change.hi))
    for g in config.gates:
        st = state.gates.get(g.id)
        if g.tier in BLOCKING_TIERS and st is not None and st.result is not None and st.status in (FAIL, ERROR) \
                and not st.result.awaiting:
            rep.blockers.append(Blocker(g, st.status, st.since, st.result.message))
        ev = evidence_of(g)
        if ev is not None and ev.expires_at is not None and start <= ev.expires_at <= now + since:
            rep.expiring.append(Expiring(g, ev))
    # Oldest blocker first within a tier: the longest-standing problem leads.
    rep.blockers.sort(key=lambda b: (TIERS.index(b.gate.tier), b.since if b.since is not None else now))
    rep.expiring.sort(key=lambda x: x.expires_at)
    return rep
