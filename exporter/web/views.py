"""What the status page shows, as view models: uptime strips, one gate, one tracker with filters applied.

Pure functions of the config and the state (no HTTP, no templates), so they are tested directly.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import markupsafe

from exporter.config.durations import format_duration
from exporter.config.model import Gate
from exporter.model import ERROR, FAIL, PASS, PENDING
from exporter.state.memory import GateState
from exporter.web.humanize import DEFAULT_EXPECTATION, ago, checks, format_in, summary
from exporter.web.whole import UNKNOWN, UnknownGate

# `unknown`: a gate of a shard that did not answer (web/whole.py); counted as an error, never as a pass.
STATUS_LABELS = {PASS: "Pass", FAIL: "Fail", ERROR: "Error", PENDING: "Pending", UNKNOWN: "Unknown"}


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


def uptime_strip(buckets: Mapping[int, Sequence[int]], now: float, cell_seconds: int, count: int, label: str,
                 ratio: tuple[int, int] | None = None) -> Strip:
    """Sum the stored uptime buckets into `count` cells of `cell_seconds`, the last holding `now`.

    `ratio` (passed, total) replaces the cells' sum in the text: an uptime gate's window starts at
    `now - window`, not at a cell boundary, and the strip must say what the gate's value says."""
    first = (int(now) // cell_seconds - count + 1) * cell_seconds
    sums = [[0, 0] for _ in range(count)]
    for start, (passed, total) in buckets.items():
        i = (int(start) - first) // cell_seconds
        if 0 <= i < count:
            sums[i][0] += passed
            sums[i][1] += total
    cells = tuple(Cell(first + i * cell_seconds, cell_seconds, p, t) for i, (p, t) in enumerate(sums))
    passed, total = ratio if ratio is not None else (sum(p for p, _ in sums), sum(t for _, t in sums))
    return Strip(label, "hour" if cell_seconds == 3600 else "day", cells, passed, total)


def strips(st: GateState | None, now: float) -> tuple[Strip, Strip]:
    """The 24-hour (hourly cells) and 30-day (daily cells) strips of a gate."""
    buckets = st.buckets if st else {}
    return (uptime_strip(buckets, now, 3600, 24, "Last 24 hours"),
            uptime_strip(buckets, now, 86400, 30, "Last 30 days"))


def window_strips(observed: GateState | None, window: float, now: float, name: str) -> tuple[Strip, Strip]:
    """An uptime gate's strips: the observed gate's last 24 hours, and its evaluations over the gate's own
    window, with the ratio counted as the probe counts it (GateState.uptime), so the two agree."""
    buckets = observed.buckets if observed else {}
    ratio = observed.uptime(window, now) if observed else (0, 0)
    if window >= 2 * 86400:
        cell, count = 86400, min(90, math.ceil(window / 86400))
    else:
        cell, count = 3600, min(48, max(1, math.ceil(window / 3600)))
    return (uptime_strip(buckets, now, 3600, 24, f"{name}, last 24 hours"),
            uptime_strip(buckets, now, cell, count, f"{name}, last {_window_words(window)}", ratio))


def _window_words(window: float) -> str:
    """`30 days`, `12 hours`, else the duration as config writes it (`4w2d` reads worse than `30 days`)."""
    for size, unit in ((86400, "day"), (3600, "hour")):
        if window >= size and window % size == 0:
            n = int(window // size)
            return f"{n} {unit}{'' if n == 1 else 's'}"
    return format_duration(window)


def gate_view(gate: Gate, st: GateState | None, now: float, clock: Callable[[float | None, float], str] = ago,
              observed: tuple[str, GateState | None, float] | None = None) -> dict[str, Any]:
    """Everything the templates show of one gate.

    `observed` (title, state, window) is what an `uptime` gate counts: its strips then show that
    gate's uptime, the number its value is, instead of how often the uptime gate itself passed."""
    r = st.result if st else None
    status = UNKNOWN if isinstance(st, UnknownGate) else st.status if st else PENDING
    measurements = dict(r.measurements) if r else {}
    day, month = window_strips(observed[1], observed[2], now, f"Uptime of {observed[0]}") if observed \
        else strips(st, now)
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
        "last_evaluation_ago": clock(r.started, now) if r else "never",
        "duration": format_in(r.duration, "ms" if r.duration < 1 else "s") if r else "—",
        "last_pass": st.last_pass if st else None,
        "last_pass_ago": clock(st.last_pass, now) if st else "never",
        "since": st.since if st else None,
        "since_ago": clock(st.since, now) if st and st.since else "",
        "strips": (day, month),
        "own_strip": strips(st, now)[1] if observed else None,
        "interval": gate.interval,
        "timeout": gate.timeout,
    }
