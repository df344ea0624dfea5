"""Requests first: background slices (a reload's load and apply, a new frame's build, an old one's
teardown, a render sweep) run one per turn of the event loop, and wait while a request is being
answered, for at most DEFER_MAX each.

Why: a scrape spans about three turns of the event loop (the request read, the handler, the write),
and every turn also ran one slice of each background job under way: during a reload of 10,000
gates, a 1 ms apply slice, a 1.5-2.4 ms frame-build slice and a teardown slice per turn made a
scrape whose own rendering costs 3-5 ms take 25-37 ms. Slicing alone bounds what one slice costs,
not how many a request waits through. Here the slices of all jobs take turns, one per turn of the
loop, so that a request that arrives meanwhile is seen (the selector runs between two slices) after
one slice at most, and none runs until it is answered.

A request is "in the foreground" from the moment aiohttp has parsed it (the listener's protocol
sees it counted) until its answer has been written (a middleware), or its connection ends; an
HTTP reload steps out of it while it waits for the reload (web/app.py).
A slice due meanwhile runs once no request is, or once it has waited DEFER_MAX, whichever comes
first: a client that keeps a request open, or a flood of them, makes a reload slower, never stops it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

# The longest a slice waits for the requests in flight: a scrape of 10,000 gates is answered in
# 5-10 ms, so this lets it finish, while a reload under requests that never stop still advances.
DEFER_MAX = 0.020
# Within this of DEFER_MAX counts as due: the loop runs a timer up to its clock resolution early, and
# one re-armed for what is left would fire at once again, and again.
SLACK = 0.001


class Held:
    """A background callback asked for: like the asyncio.Handle call_soon returns, it can be cancelled."""

    __slots__ = ("callback", "cancelled", "held", "since")

    def __init__(self, callback: Callable[[], object], since: float):
        self.callback = callback
        self.since = since
        self.cancelled = False
        self.held = False  # it has waited for a request

    def cancel(self) -> None:
        self.cancelled = True


Later = asyncio.Handle | Held  # what a view keeps to cancel a callback asked for


class Foreground:
    """Which connections have a request being answered, and the background callbacks waiting their turn."""

    def __init__(self, defer_max: float = DEFER_MAX):
        self.defer_max = defer_max
        self._busy: set[Any] = set()  # transports with a request parsed and its answer not yet written
        self._queue: collections.deque[Held] = collections.deque()  # in the order asked for
        self._pump: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.held_total = 0  # callbacks that had to wait for a request, and of them those run at DEFER_MAX
        self.overdue_total = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        """qualitygate_background_held_total and _overdue_total (a prometheus_client collector)."""
        yield CounterMetricFamily("qualitygate_background_held_total",
                                  "Background slices (a reload's load and apply, a frame's build or teardown, a "
                                  "render sweep) that waited for HTTP requests in flight.", value=self.held_total)
        yield CounterMetricFamily("qualitygate_background_overdue_total",
                                  "Of those, slices that ran with requests still in flight, having waited as long "
                                  "as they may.", value=self.overdue_total)

    @property
    def busy(self) -> bool:
        return bool(self._busy)

    # --- requests ------------------------------------------------------------------------

    def enter(self, key: object) -> None:
        """A request was parsed on this connection (key: its transport)."""
        self._busy.add(key)

    def leave(self, key: object) -> None:
        """This connection's answer is written, or the connection is gone."""
        if key not in self._busy:
            return
        self._busy.discard(key)
        if not self._busy:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._schedule()

    # --- background work -----------------------------------------------------------------

    def call_soon(self, callback: Callable[[], object]) -> Held:
        """Run callback in a later turn of the loop, after those asked for before it (one per turn), once no
        request is in flight or it has waited DEFER_MAX."""
        entry = Held(callback, asyncio.get_running_loop().time())  # the loop's clock: the one its timers keep
        self._queue.append(entry)
        self._schedule()
        return entry

    async def turn(self) -> None:
        """Give the loop its turn (and the requests in flight theirs): asyncio.sleep(0) for a sliced coroutine."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        entry = self.call_soon(wake)
        try:
            await done
        finally:
            entry.cancel()

    def _schedule(self) -> None:
        if self._pump is None and self._queue:
            self._pump = asyncio.get_running_loop().call_soon(self._run_one)

    def _run_one(self) -> None:
        # Looked at when due, not when asked for: a request that arrived in the meantime (this turn's
        # select) holds it too.
        self._pump = None
        queue = self._queue
        while queue and queue[0].cancelled:
            queue.popleft()
        if not queue:
            return
        entry = queue[0]
        if self._busy:
            left = self.defer_max - (asyncio.get_running_loop().time() - entry.since)
            if left > SLACK:
                for waiting in queue:
                    if not waiting.held and not waiting.cancelled:
                        waiting.held = True
                        self.held_total += 1
                if self._timer is None:  # the oldest is due first
                    self._timer = asyncio.get_running_loop().call_later(left, self._due)
                return
            self.overdue_total += 1
        queue.popleft()
        try:
            entry.callback()
        finally:
            self._schedule()  # the next one in the next turn, whatever this one raised

    def _due(self) -> None:
        self._timer = None
        self._schedule()


def plain_call_soon(callback: Callable[[], object]) -> asyncio.Handle:
    """What a view does without a Foreground: the loop's call_soon."""
    return asyncio.get_running_loop().call_soon(callback)
