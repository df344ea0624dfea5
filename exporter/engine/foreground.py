"""Requests first: background slices (a reload's apply, a new frame's build, an old one's teardown)
wait while a request is being answered, for at most DEFER_MAX each.

Why: a scrape spans about three turns of the event loop (the request read, the handler, the write),
and every turn also ran one slice of each background job under way: during a reload of 10,000
gates, a 1 ms apply slice, a 1.5-2.4 ms frame-build slice and a teardown slice per turn made a
scrape whose own rendering costs 3-5 ms take 25-37 ms. Slicing alone bounds what one turn costs,
not how many turns a request waits through; this is what keeps slices out of a request's turns.

A request is "in the foreground" from the moment its head has arrived (the listener's protocol
sees the blank line) until its answer has been written (a middleware), or its connection ends.
A slice that finds one there is held and runs once no request is (in the loop's next turn), or
once it has waited DEFER_MAX, whichever comes first: a client that keeps a request open, or a
flood of them, makes a reload slower, never stops it.

The storage writer, a thread, asks `idle` the same thing before each transaction (it holds the GIL
for milliseconds at a time), within its own bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

# The longest a slice waits for the requests in flight. A scrape of 10,000 gates is answered in
# 5-10 ms; 20 ms lets it finish, and a reload under a constant stream of requests still advances
# one slice per 20 ms (a 10,000-gate reload takes ~300 slices: ~6 s instead of ~2 s).
DEFER_MAX = 0.020
SLACK = 0.001


class Held:
    """A background callback that was asked to run: like the asyncio.Handle call_soon returns."""

    __slots__ = ("callback", "cancelled", "held", "since")

    def __init__(self, callback: Callable[[], object], since: float):
        self.callback = callback
        self.since = since
        self.cancelled = False
        self.held = False  # it has waited for a request at least once

    def cancel(self) -> None:
        self.cancelled = True


class Foreground:
    """Which connections have a request being answered, and the background callbacks held for them."""

    def __init__(self, defer_max: float = DEFER_MAX):
        self.defer_max = defer_max
        self._busy: set[Any] = set()  # transports with a request head read and no answer written yet
        self._held: list[Held] = []
        self._timer: asyncio.TimerHandle | None = None
        self.idle = threading.Event()  # set while no request is in flight: for threads (the storage writer)
        self.idle.set()
        self.held_total = 0  # callbacks that had to wait, and of them those that ran at DEFER_MAX
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
        """A request head arrived on this connection (key: its transport)."""
        if not self._busy:
            self.idle.clear()
        self._busy.add(key)

    def leave(self, key: object) -> None:
        """This connection's answer is written, or the connection is gone."""
        if key not in self._busy:
            return
        self._busy.discard(key)
        if not self._busy:
            self.idle.set()
            self._release()

    # --- background work -----------------------------------------------------------------

    def call_soon(self, callback: Callable[[], object]) -> Held:
        """Run callback in a later turn of the loop, once no request is in flight (or DEFER_MAX from now)."""
        loop = asyncio.get_running_loop()
        entry = Held(callback, loop.time())  # the loop's clock, the one its timers keep
        loop.call_soon(self._run, entry)
        return entry

    async def turn(self) -> None:
        """Give the loop a turn (and the requests in flight theirs), as asyncio.sleep(0) in a sliced coroutine."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        entry = self.call_soon(wake)
        try:
            await done
        finally:
            entry.cancel()

    def _run(self, entry: Held) -> None:
        # Checked when the callback is due, not when it was asked for: a request that arrived in the
        # meantime (the same turn's select) holds it too.
        if entry.cancelled:
            return
        if self._busy:
            left = self.defer_max - (asyncio.get_running_loop().time() - entry.since)
            # Within a millisecond counts as due: the loop runs a timer up to its clock resolution early,
            # and one re-armed for what is left would fire at once again, and again.
            if left > SLACK:
                if not entry.held:
                    entry.held = True
                    self.held_total += 1
                self._held.append(entry)
                self._arm(left)
                return
            self.overdue_total += 1
        entry.callback()

    def _arm(self, delay: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self._release()

    def _release(self) -> None:
        """Every held callback is looked at again next turn: run if no request is in flight or it waited long enough."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        if not held:
            return
        loop = asyncio.get_running_loop()
        for entry in held:
            if not entry.cancelled:
                loop.call_soon(self._run, entry)


Later = asyncio.Handle | Held  # what a view keeps to cancel a callback asked for


def plain_call_soon(callback: Callable[[], object]) -> asyncio.Handle:
    """What a view does without a Foreground: the loop's call_soon."""
    return asyncio.get_running_loop().call_soon(callback)
