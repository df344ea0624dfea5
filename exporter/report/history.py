"""A gate's past, rebuilt from what the state keeps: uptime buckets, and the ring of recent evaluations.

Two sources, with different resolutions:

- the ring (the last 50 evaluations) gives exact outcomes and times, and covers everything from its
  oldest entry on;
- uptime buckets (passed, total) cover the rest, 5-minute buckets for the last 2 hours, hourly for
  the last 2 days, daily beyond, kept for the tracker's longest window plus 2 days (30d + 2d by
  default): a change seen there is known to the bucket, "between 14:00 and 15:00", not to the second.

A bucket in which some evaluations passed and some did not is "mixed": it holds at least one change,
and the buckets around it say which. Nothing here claims a pass that was not measured: a gate with
no evaluation, or a mixed bucket at the moment asked about, did not pass then.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.model import PASS
from exporter.state.memory import GateState

DAY = 86400
_SIZES = ((2 * 3600, 300), (2 * DAY, 3600), (math.inf, DAY))  # as exporter.state.memory coarsens them

PASSED, FAILED, MIXED = "pass", "fail", "mixed"
REGRESSED, RECOVERED = "regressed", "recovered"


@dataclass(frozen=True, slots=True)
class Span:
    """Evaluations over [lo, hi): one exact evaluation (lo == hi) from the ring, or a bucket's counts."""

    lo: float
    hi: float
    passed: int
    total: int
    outcome: str = ""  # the exact outcome (pass, fail, error) of a ring entry; "" for a bucket

    @property
    def exact(self) -> bool:
        """One evaluation whose time is known to the second."""
        return bool(self.outcome)

    @property
    def state(self) -> str:
        """pass (all passed), fail (none did) or mixed."""
        return PASSED if self.passed == self.total else FAILED if self.passed == 0 else MIXED


@dataclass(frozen=True, slots=True)
class Change:
    """A gate going from passing to not passing (regressed) or back (recovered), within [lo, hi]."""

    gate: str
    kind: str  # regressed | recovered
    lo: float
    hi: float
    exact: bool  # known to the evaluation (lo == hi), else to the bucket
    outcome: str = ""  # what it regressed to (fail, error) when known
    failed: int = 0  # evaluations that did not pass, in a mixed bucket


def bucket_size(start: int, next_start: float | None, now: float) -> int:
    """How long a stored bucket is: by its age, as the state coarsens them, never past the next one."""
    age = now - start
    size = next(s for limit, s in _SIZES if age < limit)
    while size > 300 and (start % size or (next_start is not None and start + size > next_start)):
        size = 3600 if size == DAY else 300
    return size


def timeline(st: GateState | None, now: float) -> list[Span]:
    """A gate's evaluations, oldest first: buckets up to the ring's oldest entry, then the ring's entries."""
    if st is None:
        return []
    ring = list(st.history)
    first_exact = ring[0].started if ring else math.inf
    starts = sorted(list(st.buckets.items()))  # a copy: the loop may add buckets while a thread reads
    spans: list[Span] = []
    for i, (start, (passed, total)) in enumerate(starts):
        if start >= first_exact:
            break  # the ring holds every evaluation from its oldest entry on
        nxt = starts[i + 1][0] if i + 1 < len(starts) else None
        hi = float(start + bucket_size(start, nxt, now))
        if hi > first_exact:  # the ring's oldest entries are counted in this bucket too: leave them out here
            inside = [r for r in ring if r.started < hi]
            passed -= sum(r.passed for r in inside)
            total -= len(inside)
            hi = first_exact
        if total > 0:
            spans.append(Span(float(start), hi, max(0, min(passed, total)), total))
    spans += [Span(r.started, r.started, int(r.passed), 1, r.outcome) for r in ring]
    return spans


def changes(gate_id: str, st: GateState | None, since: float, now: float) -> list[Change]:
    """The gate's regressions and recoveries that happened from `since` on, oldest first."""
    spans = timeline(st, now)
    current = st.result.outcome if st and st.result else None
    out: list[Change] = []
    state: str | None = None  # pass | fail: what the gate last showed
    for i, s in enumerate(spans):
        found: list[Change] = []
        if s.state == MIXED:
            # Both happened inside: which came last is told by what follows (the next span, or now).
            after = spans[i + 1].state if i + 1 < len(spans) else (PASSED if current == PASS else FAILED)
            kinds: list[str] = []
            if state == PASSED:
                kinds = [REGRESSED, RECOVERED] if after == PASSED else [REGRESSED]
            elif state == FAILED:
                kinds = [RECOVERED, REGRESSED] if after == FAILED else [RECOVERED]
            elif after in (PASSED, FAILED):
                kinds = [RECOVERED if after == PASSED else REGRESSED]
            found = [Change(gate_id, k, s.lo, s.hi, False, failed=s.total - s.passed) for k in kinds]
            state = after if after in (PASSED, FAILED) else None
        else:
            if state == PASSED and s.state == FAILED:
                found.append(Change(gate_id, REGRESSED, s.lo, s.hi, s.exact, outcome=s.outcome))
            elif state == FAILED and s.state == PASSED:
                found.append(Change(gate_id, RECOVERED, s.lo, s.hi, s.exact))
            state = s.state
        out += [c for c in found if c.hi >= since]
    return out


def passed_at(st: GateState | None, t: float, now: float) -> bool:
    """Whether the gate was passing at time t: its last evaluation then passed (a mixed bucket did not)."""
    last: Span | None = None
    for s in timeline(st, now):
        if s.lo > t:
            break
        last = s
    return last is not None and last.state == PASSED


@dataclass(frozen=True, slots=True)
class Series:
    """Completion of one group of gates, one point a day (None: no evaluation of the group that day)."""

    key: str  # "" for the whole tracker, else the phase id
    label: str
    days: tuple[int, ...]  # each day's start (UTC midnight, Unix seconds)
    values: tuple[float | None, ...]
    now: float  # completion now, from each gate's current status


def daily_ratios(st: GateState | None, first_day: int, days: int) -> list[float | None]:
    """A gate's share of passing evaluations on each day (None: not evaluated that day)."""
    sums = [[0, 0] for _ in range(days)]
    if st is not None:
        for start, (passed, total) in list(st.buckets.items()):
            i = (start - first_day) // DAY
            if 0 <= i < days:
                sums[i][0] += passed
                sums[i][1] += total
    return [p / t if t else None for p, t in sums]


def completion_series(groups: Sequence[tuple[str, str, Sequence[str]]], states: dict[str, GateState],
                      now: float, days: int = 30) -> list[Series]:
    """Daily completion over the last `days` days of each (key, label, gate ids) group.

    A day's point is the mean over the group's gates of the share of their evaluations that passed
    that day (count-weighted, as uptime is): a gate not evaluated that day counts as not passing,
    and a day on which no gate of the group was evaluated (the exporter was down) has no point.
    """
    first_day = int(now // DAY * DAY) - (days - 1) * DAY
    per_gate: dict[str, list[float | None]] = {}
    for _key, _label, ids in groups:
        for gid in ids:
            if gid not in per_gate:
                per_gate[gid] = daily_ratios(states.get(gid), first_day, days)
    out = []
    for key, label, ids in groups:
        values: list[float | None] = []
        for i in range(days):
            seen = [per_gate[g][i] for g in ids if per_gate[g][i] is not None]
            values.append(sum(v for v in seen if v is not None) / len(ids) if seen and ids else None)
        current = _current(states, ids)
        out.append(Series(key, label, tuple(first_day + i * DAY for i in range(days)), tuple(values), current))
    return out


def _current(states: dict[str, GateState], ids: Iterable[str]) -> float:
    ids = list(ids)
    passed = sum(1 for g in ids if (st := states.get(g)) is not None and st.status == PASS)
    return passed / len(ids) if ids else 0.0
