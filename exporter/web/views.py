"""What the status page shows, as view models: uptime strips, one gate, one tracker with filters applied.

Pure functions of the config and the state (no HTTP, no templates), so they are tested directly.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import markupsafe

from exporter.config.model import Config, Gate
from exporter.model import ERROR, FAIL, PASS, PENDING, STATUSES
from exporter.report.status import progress_status
from exporter.state.memory import GateState, State
from exporter.web.filters import Filters
from exporter.web.humanize import DEFAULT_EXPECTATION, ago, checks, format_in, summary

STATUS_LABELS = {PASS: "Pass", FAIL: "Fail", ERROR: "Error", PENDING: "Pending"}


@functools.lru_cache(maxsize=256)
def _span(start: int, seconds: int) -> str:
    """A cell's time span in words; the same few spans recur for every gate, hence the cache."""
    begin = datetime.datetime.fromtimestamp(start, datetime.UTC)
    if seconds >= 86400:
        return begin.strftime("%Y-%m-%d UTC")
    end = begin + datetime.timedelta(seconds=seconds)
    return f"{begin:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"


class Cell(NamedTuple):
    """One cell of an uptime strip: the evaluations that started in its time span."""

    start: int
    seconds: int
    passed: int
    total: int

    @property
    def level(self) -> str:
        """none | full | high | mid | low: the CSS class, by pass ratio."""
        if not self.total:
            return "none"
        r = self.passed / self.total
        return "full" if r == 1 else "high" if r >= 0.95 else "mid" if r >= 0.5 else "low"

    @property
    def title(self) -> str:
        """The tooltip: span and counts."""
        if not self.total:
            return f"{_span(self.start, self.seconds)}: no evaluations"
        return (f"{_span(self.start, self.seconds)}: {self.passed:,} of {self.total:,} passed "
                f"({100 * self.passed / self.total:.1f} %)")


@dataclass(frozen=True)
class Strip:
    """An uptime strip: equal cells ending with the current hour or day."""

    label: str
    unit: str  # "hour" | "day"
    cells: tuple[Cell, ...]
    passed: int
    total: int

    @property
    def ratio_text(self) -> str:
        """`99.3 %`, or `no data`."""
        return f"{100 * self.passed / self.total:.1f} %" if self.total else "no data"

    @property
    def summary(self) -> str:
        """The strip in words, for screen readers and the text next to it."""
        if not self.total:
            return f"{self.label}: no evaluations."
        bad = sum(1 for c in self.cells if c.total and c.passed < c.total)
        cells = f"{bad} {self.unit}{'' if bad == 1 else 's'} with failures" if bad else f"no {self.unit} with failures"
        return f"{self.label}: {self.passed:,} of {self.total:,} evaluations passed ({self.ratio_text}); {cells}."

    @property
    def cells_html(self) -> markupsafe.Markup:
        """The cells as HTML (built here, not in a template loop: a page of 1,000 gates has 54,000)."""
        return markupsafe.Markup("".join(
            f'<span class="cell u-{c.level}" title="{markupsafe.escape(c.title)}"></span>' for c in self.cells))


def uptime_strip(buckets: Mapping[int, Sequence[int]], now: float, cell_seconds: int, count: int, label: str) -> Strip:
    """Sum the stored uptime buckets into `count` cells of `cell_seconds`, the last holding `now`."""
    first = (int(now) // cell_seconds - count + 1) * cell_seconds
    sums = [[0, 0] for _ in range(count)]
    for start, (passed, total) in buckets.items():
        i = (int(start) - first) // cell_seconds
        if 0 <= i < count:
            sums[i][0] += passed
            sums[i][1] += total
    cells = tuple(Cell(first + i * cell_seconds, cell_seconds, p, t) for i, (p, t) in enumerate(sums))
    return Strip(label, "hour" if cell_seconds == 3600 else "day", cells,
                 sum(p for p, _ in sums), sum(t for _, t in sums))


def strips(st: GateState | None, now: float) -> tuple[Strip, Strip]:
    """The 24-hour (hourly cells) and 30-day (daily cells) strips of a gate."""
    buckets = st.buckets if st else {}
    return (uptime_strip(buckets, now, 3600, 24, "Last 24 hours"),
            uptime_strip(buckets, now, 86400, 30, "Last 30 days"))


def gate_view(gate: Gate, st: GateState | None, now: float) -> dict[str, Any]:
    """Everything the templates show of one gate."""
    r = st.result if st else None
    status = st.status if st else PENDING
    measurements = dict(r.measurements) if r else {}
    day, month = strips(st, now)
    return {
        "id": gate.id,
        "title": gate.title,
        "tier": gate.tier,
        "kind": gate.kind,
        "phase": gate.phase,
        "step": gate.step,
        "team": gate.team,
        "description": gate.description,
        "status": status,
        "status_label": STATUS_LABELS[status],
        "checks": checks(gate, measurements),
        "value": summary(gate, measurements),
        "default_expectation": DEFAULT_EXPECTATION.get(gate.kind, ""),
        "message": r.message if r else "",
        "last_evaluation": r.started if r else None,
        "last_evaluation_ago": ago(r.started, now) if r else "never",
        "duration": format_in(r.duration, "ms" if r.duration < 1 else "s") if r else "—",
        "last_pass": st.last_pass if st else None,
        "last_pass_ago": ago(st.last_pass, now) if st else "never",
        "since": st.since if st else None,
        "since_ago": ago(st.since, now) if st and st.since else "",
        "strips": (day, month),
        "interval": gate.interval,
        "timeout": gate.timeout,
    }


def tracker_view(config: Config, state: State, filters: Filters, now: float) -> dict[str, Any]:
    """The overview page of one tracker, with the filters applied to gates and blockers."""
    doc = progress_status(config, state, now)
    status_of = {g["id"]: g["status"] for g in doc["gates"]}
    steps = {(s["phase"], s["id"]): s for s in doc["step_completion"]}
    phases = []
    shown = 0
    for phase, pdoc in zip(config.phases, doc["phase_status"], strict=True):
        step_views = []
        for step in phase.steps:
            gates = [gate_view(g, state.gates.get(g.id), now) for g in step.gates
                     if filters.matches(g.tier, status_of[g.id])]
            if filters.active and not gates:
                continue
            shown += len(gates)
            sdoc = steps[(phase.id, step.id)]
            step_views.append({"id": step.id, "title": step.title, "team": step.team, "gates": gates,
                               "completion": sdoc["completion"], "status": sdoc["status"],
                               "passed": sum(status_of[g.id] == PASS for g in step.gates),
                               "total": len(step.gates)})
        if filters.active and not step_views:
            continue
        phases.append({"id": phase.id, "title": phase.title, "steps": step_views,
                       "completion": pdoc["completion"], "status": pdoc["status"],
                       "passed": sum(status_of[g.id] == PASS for g in phase.gates), "total": len(phase.gates)})
    blockers = []
    for b in doc["blockers"]:
        if filters.matches(b["tier"], b["status"]):
            st = state.gates.get(b["gate"])
            blockers.append({**b, "status_label": STATUS_LABELS[b["status"]],
                             "since_ts": st.since if st else None,
                             "since_ago": ago(st.since, now) if st and st.since else ""})
    # Claims nobody has evidenced yet: failing, but apart from the blockers (measured failures only).
    awaiting = [a for a in doc["awaiting_evidence"] if filters.matches(a["tier"], status_of[a["gate"]])]
    totals = {s: sum(1 for v in status_of.values() if v == s) for s in STATUSES}
    return {
        "tracker": config.tracker,
        "title": config.title,
        "overall_completion": doc["overall_completion"],
        "passed": totals[PASS],
        "total": len(config.gates),
        "totals": totals,
        "quality_gates": doc["quality_gates"],
        "phases": phases,
        "blockers": blockers,
        "awaiting": awaiting,
        "shown": shown,
        "generated_at": doc["generated_at"],
    }
