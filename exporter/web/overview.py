"""The overview page's view model at scale: counts first, gates only where they are asked for.

A 10,000-gate tracker rendered every gate with two uptime strips: 53 MB of HTML per load. The
overview now lists blockers (bounded), then phases and steps with their counts; a step's gates are
rendered on the overview only while it needs attention and a small budget lasts, otherwise when it
is opened (`/phases/{phase}/steps/{step}`). Times are in whole minutes here, so an unchanged tracker
gives the same view, hence the same ETag, for a minute at a time.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from exporter.config.model import TIERS, Config, Gate, Phase, Step
from exporter.model import ERROR, FAIL, PASS, PENDING, STATUSES
from exporter.report.status import BLOCKING_TIERS, awaiting, rfc3339
from exporter.state.memory import State
from exporter.web.filters import Filters
from exporter.web.views import STATUS_LABELS, gate_view
from exporter.web.whole import UnknownGate

INLINE_GATES = 60  # gates rendered on the overview itself, in steps that need attention
BLOCKERS_SHOWN = 50  # blockers listed on the overview; the rest behind ?blockers=all
SEARCH_LIMIT = 100  # gates a search lists
MIN_QUERY = 2  # characters a search needs (one letter matches most of a tracker)


def minutes_ago(ts: float | None, now: float) -> str:
    """`under a minute ago`, `5 min ago`, `3 h ago`, `2 d ago`, `never`: minute-coarse, so it changes rarely."""
    if ts is None:
        return "never"
    age = max(0.0, now - ts)
    if age < 60:
        return "under a minute ago"
    for limit, size, unit in ((7200, 60, "min"), (172800, 3600, "h")):
        if age < limit:
            return f"{int(age // size)} {unit} ago"
    return f"{int(age // 86400)} d ago"


def group_word(counts: dict[str, int], total: int) -> str:
    """complete | failing | in progress | not started, for a phase or a step on the page.

    The JSON API's words stay as the contract has them; the page says "failing" where gates were
    evaluated and failed, which the API's `not_started` (no gate passes) hid."""
    if total and counts[PASS] == total:
        return "complete"
    if counts[FAIL] or counts[ERROR]:
        return "failing"
    return "in progress" if counts[PASS] else "not started"


@dataclass
class StepSummary:
    """One step on the overview: its counts, and its gates when they are rendered here."""

    phase: str
    id: str
    title: str
    team: str | None
    counts: dict[str, int]
    total: int  # gates of the step (all, whatever the filter)
    shown: int  # gates the filter lets through
    word: str
    open: bool
    gates: list[dict[str, Any]] | None  # None: fetched when opened


@dataclass
class PhaseSummary:
    """One phase on the overview."""

    id: str
    title: str
    counts: dict[str, int]
    total: int
    word: str
    completion: float
    steps: list[StepSummary] = field(default_factory=list)


@dataclass
class Overview:
    """Everything the overview shows of one tracker."""

    tracker: str
    title: str
    totals: dict[str, int]
    total: int
    overall_completion: float
    quality_gates: dict[str, dict[str, int]]
    blockers: list[dict[str, Any]]
    blocker_count: int
    awaiting: list[dict[str, Any]]
    phases: list[PhaseSummary]
    shown: int
    generated_at: str | None

    @property
    def passed(self) -> int:
        """Gates that pass."""
        return self.totals[PASS]


def _counts() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


def _tier_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(entries, key=lambda e: TIERS.index(e["tier"]))


def tracker_overview(config: Config, state: State, filters: Filters, now: float,
                     all_blockers: bool = False) -> Overview:
    """The overview of one tracker, in one go (see overview_slices)."""
    slices = overview_slices(config, state, filters, now, all_blockers)
    while True:
        try:
            next(slices)
        except StopIteration as done:
            return done.value


SLICE_GATES = 500  # gates looked at between two yields: ~5 ms, so the scheduler's loop never waits long


def overview_slices(config: Config, state: State, filters: Filters, now: float,
                    all_blockers: bool = False) -> Generator[None, None, Overview]:
    """The overview of one tracker, one pass over its gates (no uptime strips but for the few rendered).

    A generator that yields every SLICE_GATES gates: the handler gives the event loop back at each
    yield, since 10,000 gates in one go held the scheduler up for a tenth of a second a page."""
    word = {PASS: "passed", FAIL: "failed", ERROR: "error", PENDING: "pending"}
    tiers = {t: {"passed": 0, "failed": 0, "error": 0, "pending": 0, "total": 0} for t in TIERS}
    totals = _counts()
    blockers: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    phases: list[PhaseSummary] = []
    budget = INLINE_GATES
    shown = seen = 0
    for phase in config.phases:
        pcounts = _counts()
        psum = PhaseSummary(phase.id, phase.title, pcounts, len(phase.gates), "", 0.0)
        for step in phase.steps:
            scounts, matched, attention = _counts(), [], False
            for g in step.gates:
                seen += 1
                if seen % SLICE_GATES == 0:
                    yield
                st = state.gates.get(g.id)
                status = st.status if st else PENDING
                tiers[g.tier][word[status]] += 1
                tiers[g.tier]["total"] += 1
                totals[status] += 1
                pcounts[status] += 1
                waits = awaiting(g, st)
                if not filters.matches(g.tier, status):
                    continue
                scounts[status] += 1
                matched.append(g)
                if status in (FAIL, ERROR) and not waits:
                    attention = True
                r = st.result if st else None
                if waits:
                    waiting.append({"gate": g.id, "phase": g.phase, "step": g.step, "title": g.title,
                                    "tier": g.tier, "kind": g.kind, "message": r.message if r else ""})
                elif g.tier in BLOCKING_TIERS and status in (FAIL, ERROR) and not isinstance(st, UnknownGate):
                    since = st.since if st else None
                    blockers.append({"gate": g.id, "phase": g.phase, "step": g.step, "title": g.title,
                                     "tier": g.tier, "status": status, "status_label": STATUS_LABELS[status],
                                     "message": r.message if r else "", "since": rfc3339(since),
                                     "since_ts": since, "since_ago": minutes_ago(since, now) if since else ""})
            if filters.active and not matched:
                continue
            shown += len(matched)
            inline = (attention or filters.active) and len(matched) <= budget
            gates = None
            if inline:
                budget -= len(matched)
                gates = [gate_view(g, state.gates.get(g.id), now, clock=minutes_ago) for g in matched]
            psum.steps.append(StepSummary(phase.id, step.id, step.title, step.team, scounts, len(step.gates),
                                          len(matched), group_word(scounts, len(matched)), inline, gates))
        psum.word = group_word(pcounts, psum.total)
        psum.completion = pcounts[PASS] / psum.total if psum.total else 0.0
        if filters.active and not psum.steps:
            continue
        phases.append(psum)
    ordered = _tier_first(blockers)
    n = len(config.gates)
    return Overview(config.tracker, config.title, totals, n, totals[PASS] / n if n else 0.0, tiers,
                    ordered if all_blockers else ordered[:BLOCKERS_SHOWN], len(ordered), _tier_first(waiting),
                    phases, shown, rfc3339(now // 60 * 60))


def find_step(config: Config, phase_id: str, step_id: str) -> tuple[Phase, Step] | None:
    """A step by its phase's id and its own, or None."""
    for phase in config.phases:
        if phase.id == phase_id:
            for step in phase.steps:
                if step.id == step_id:
                    return phase, step
    return None


def step_gates(step: Step, state: State, filters: Filters, now: float) -> list[dict[str, Any]]:
    """The gates of one step that the filter lets through, as rows."""
    out = []
    for g in step.gates:
        st = state.gates.get(g.id)
        if filters.matches(g.tier, st.status if st else PENDING):
            out.append(gate_view(g, st, now, clock=minutes_ago))
    return out


def search(config: Config, query: str) -> list[Gate]:
    """Gates whose id or title holds the query (case-insensitive): exact id first, then config order."""
    q = query.strip().casefold()
    if len(q) < MIN_QUERY:
        return []
    exact = [g for g in config.gates if g.id == q]
    rest = [g for g in config.gates if g.id != q and (q in g.id or q in g.title.casefold())]
    return (exact + rest)[:SEARCH_LIMIT + 1]  # one more than shown tells the page there are more
