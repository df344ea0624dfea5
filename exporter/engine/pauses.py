"""Keeping the event loop's pauses short: the cyclic GC's freeze policy and the GIL during a reload.

A full pass of the cyclic GC cannot be cut in slices (CPython 3.11): at 10,000 gates it walks
~170,000 tracked objects in 60-135 ms, every few seconds while gates re-evaluate, and more often
while a reload allocates a new config. Nearly all of those objects (the configs, the frame's
pieces, the gates' state) live until the next reload, so the runtime moves them out of the
collector's sight with gc.freeze(): once prepared (a full pass, 100+ ms at 10,000 gates, before
the listener opens, so no scrape meets it), once started (a young pass only), and once each
reload is applied. Later passes
walk only what was made since.

Frozen objects are never collected, but reference counting still frees them: the config a
reload replaces (frozen dataclasses, no reference cycles) and the exposition's frame (released,
its cycles broken, when swapped out) go as soon as the last reference does. Only garbage in a
reference cycle that was frozen would stay. So a reload holds the collector off only while its
configs load (a second or so; unpickling them made young collections of 20-40 ms) and freezes
them right then (Reloading.loaded()); full passes stay off until its end (young collections go
on, so short-lived cycles are still found), when what it made is frozen too.
tests/test_engine_gc_freeze.py checks that no config, frame or gate state is frozen as garbage.

What is in flight at a freeze is frozen too: an evaluation's futures, tasks and frames. When it ends,
a reference cycle through any of them is never collected. So failures must not make cycles (a traceback
holds the frame that holds the future that holds the exception): evaluate.forget(), and the probes let
go of their futures and tracebacks (probes/reading.py, httpconn.py, command.py). Before, 5 reloads of
2,000 gates, half of them missing files, left 53,049 objects frozen as garbage; since, none
(tests/test_engine_frozen_leaks.py), but for CPython 3.11's own cycle in each asyncio socket transport
(python/cpython#100348): one per connection open at a freeze, about 7 objects, its socket closed.

While a reload's worker thread holds the GIL (the config's parse and check), every callback of
the event loop that gives the GIL up (zlib, sockets) waits up to the switch interval (5 ms) to
get it back: a sweep compressing a dozen pieces took 80 ms. The reload shortens the interval.
So does serve, for good, to 1 ms: the state file's writer thread holds the GIL too while it
flushes a round of results, and a scrape compressing six changed pieces then took 30-35 ms.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import threading
from collections.abc import AsyncIterator, Callable

from exporter.probes import reaper

HOLD = 1_000_000  # gc threshold for the oldest generation while a reload runs: no full pass
RELOAD_SWITCH_INTERVAL = 0.0005  # seconds: the GIL's switch interval while a reload runs
SERVE_SWITCH_INTERVAL = 0.001  # seconds: serve's GIL switch interval (Python's default is 5 ms)


def freeze(generation: int = 2) -> None:
    """Collect up to `generation` (2: a full pass; 1: only what was made since the last freeze, or
    nearly: cheap once the rest is frozen) and freeze every object the collector tracks now."""
    gc.collect(generation)
    gc.freeze()


class Reloading:
    """What reloading() gives: loaded() once the new configs are in memory."""

    def __init__(self, freeze: bool) -> None:
        self.freeze = freeze

    def loaded(self) -> None:
        """The new configs exist: freeze them, and let young collections run again."""
        if self.freeze and not gc.isenabled():
            gc.freeze()
            gc.enable()


@contextlib.asynccontextmanager
async def reloading(freeze: bool) -> AsyncIterator[Reloading]:
    """While a reload runs: a short GIL switch interval, and (freeze) no GC pass at all while the configs
    load (unpickling 10,000 gates' configs made young collections of 20-40 ms), none of the oldest
    generation until the end, and what the reload made frozen at its end."""
    interval = sys.getswitchinterval()
    threshold = gc.get_threshold()
    enabled = gc.isenabled()
    sys.setswitchinterval(min(interval, RELOAD_SWITCH_INTERVAL))
    if freeze:
        gc.set_threshold(threshold[0], threshold[1], HOLD)
        gc.disable()
    try:
        yield Reloading(freeze and enabled)
    finally:
        sys.setswitchinterval(interval)
        if freeze:
            gc.set_threshold(*threshold)
            # What died during the reload (cycles: exceptions and their tracebacks, closed connections) is
            # collected first: frozen, it would never be. Cheap: the configs were frozen at loaded().
            gc.collect(1)
            gc.freeze()
            if enabled:
                gc.enable()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return reaper.libc().malloc_trim  # glibc's; musl has none
    except (OSError, AttributeError):
        return None


def trim_heap() -> threading.Thread | None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim(0)), in a thread of its own:
    a CDLL call releases the GIL, so the event loop goes on meanwhile. None where there is no malloc_trim.

    Why: a reload holds the old and the new config and exposition frame at once; what of them lives in
    malloc's heap (the frame's compressed pieces, large lists) is free once the old ones are torn down, but
    glibc keeps the pages. Measured with gdb on a serve of 10,000 gates after 3 reloads: 140.2 MB RSS,
    130.2 MB after one malloc_trim(0) (CPython's own arenas, freed only when empty, are not touched).
    Exposition calls it when a retired frame's teardown is done (Runtime.trim_heap, set by serve).
    """
    fn = _malloc_trim()
    if fn is None:
        return None
    thread = threading.Thread(target=fn, args=(0,), name="malloc-trim", daemon=True)
    thread.start()
    return thread

