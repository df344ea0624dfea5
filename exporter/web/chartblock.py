"""The overview's "Completion over time" block: the last 30 days per tracker and phase, from uptime buckets.

Drawn from the uptime buckets the state already keeps (30 days + 2 by default, in memory and in the
state file) rather than from a series of its own: nothing new is written per evaluation, a state
file from before this block existed charts its past at once, and the chart and `gate_uptime_ratio`
count the same evaluations. Building it reads every gate's buckets (about 100 per gate), so it is
built in a thread and kept for CACHE_SECONDS: a point is a day, and "now" is on the page beside it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import markupsafe

from exporter.config.model import Config
from exporter.report.chart import completion_svg, legend, table_rows
from exporter.report.history import completion_series
from exporter.state.memory import State

CACHE_SECONDS = 300.0
DAYS = 30


@dataclass(frozen=True)
class ChartBlock:
    """What the template shows: the SVG, its legend and the same numbers as a table."""

    svg: markupsafe.Markup
    legend: list[dict[str, str]]
    header: list[str]
    rows: list[list[str]]
    key: str  # changes whenever the numbers do (the page's ETag includes it)


def build(config: Config, state: State, now: float) -> ChartBlock:
    """The block of one tracker (pure: the state is only read)."""
    groups = [("", config.title, [g.id for g in config.gates])]
    groups += [(p.id, p.title, [g.id for g in p.gates]) for p in config.phases]
    series = completion_series(groups, dict(state.gates), now, DAYS)
    header, rows = table_rows(series)
    # Escaped by completion_svg as it builds the SVG: the text in it is ours or escaped there.
    svg = markupsafe.Markup(completion_svg(series, f"Completion of {config.title}, the last {DAYS} days"))
    return ChartBlock(svg, legend(series), header, rows, repr([(s.values, s.now) for s in series]))


class ChartCache:
    """One block per tracker, rebuilt in a thread at most every CACHE_SECONDS (and when the config changes)."""

    def __init__(self) -> None:
        self._blocks: dict[str, tuple[float, int, ChartBlock]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, config: Config, state: State, now: float | None = None) -> ChartBlock:
        """The tracker's block, fresh within CACHE_SECONDS."""
        now = time.time() if now is None else now
        lock = self._locks.setdefault(config.tracker, asyncio.Lock())
        async with lock:  # one build at a time per tracker; waiting requests take its result
            got = self._blocks.get(config.tracker)
            if got is None or got[1] != id(config) or now - got[0] >= CACHE_SECONDS or now < got[0]:
                block = await asyncio.to_thread(build, config, state, now)
                got = self._blocks[config.tracker] = (now, id(config), block)
            return got[2]
