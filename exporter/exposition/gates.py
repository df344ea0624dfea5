"""/metrics: the Prometheus text format (and OpenMetrics, and gzip), rendered incrementally and cached.

The gate series of one config are a frame (frame.py: cached compressed pieces, re-rendered where
gates changed); only the tail (self metrics and the default registry's process metrics) is
rendered per scrape. A new config (a reload) is built as a new frame in slices of STEP_BUDGET on
the event loop, while scrapes go on being answered from the previous frame, which evaluations keep
current; the frames swap once the new one is complete, pieces rendered and compressed. So a scrape
shows every gate of the old config or every gate of the new one, never half of each, and never
waits for 10,000 gates to be rendered (a reload used to make the next scrapes 70-185 ms).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry

from exporter.config.model import Config, Gate
from exporter.engine import pauses
from exporter.engine.foreground import Later, plain_call_soon
from exporter.exposition.blobs import Blob
from exporter.exposition.families import (
    CONTRACT_METRICS,
    EVIDENCE_METRICS,
    GATE_FAMILIES,
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
)
from exporter.exposition.frame import Frame
from exporter.exposition.own import render_tail, tail_registry
from exporter.state.memory import GateState, State

if TYPE_CHECKING:
    from exporter.engine.runtime import Runtime

__all__ = ["CONTRACT_METRICS", "EVIDENCE_METRICS", "OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "Exposition",
           "exposition_for"]

# Changed pieces of the frame served are rendered ahead every SWEEP_EVERY seconds, for at most
# SWEEP_BUDGET seconds each time; a new frame is built in steps of at most STEP_BUDGET seconds, one
# step per turn of the event loop (a scrape waits for one step at most).
SWEEP_EVERY, SWEEP_BUDGET = 0.25, 0.005
# A scrape takes ~3 turns of the loop, each of which also runs a slice of the build (and of the reload's apply):
# with 3 ms slices, scrapes during a reload of 10,000 gates took 30-50 ms.
STEP_BUDGET = 0.001


class Exposition:
    """Serves the current frame of gate series, builds the next one beside it, renders a whole scrape."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY,
                 after_teardown: Callable[[], object] | None = None,
                 call_soon: Callable[[Callable[[], object]], Later] = plain_call_soon):
        self.last_render_seconds = 0.0
        # How background slices are scheduled: serve's runtime holds them while a request is answered.
        self._call_soon = call_soon
        self._after_teardown = after_teardown  # once retired frames are let go of (serve: pauses.trim_heap)
        self._tail_registry = tail_registry(registry, lambda: self.last_render_seconds)
        self._sweep_timer: Later | None = None
        self._headers = {om: [Blob(f.header(om).encode()) for f in GATE_FAMILIES] for om in (False, True)}
        self._live = self._built([], prerender=False)
        self._next: Frame | None = None  # being built; swapped in when complete
        self._steps: Iterator[None] | None = None
        self._step_handle: Later | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._configured = False
        self._teardowns: list[Iterator[None]] = []  # frames no longer served, let go of in slices
        self._teardown_handle: Later | None = None

    def _built(self, trackers: list[tuple[Config, State]], prerender: bool = True) -> Frame:
        frame = Frame(trackers, self._headers)
        for _ in frame.build(prerender):
            pass
        return frame

    def set_trackers(self, trackers: list[tuple[Config, State]]) -> None:
        """Show a new set of configs (start and reload): built at once the first time and outside an
        event loop, else in slices while the previous frame goes on being served."""
        self._cancel_build()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not self._configured:
            # The first config is applied before the listener opens (serve, make_app): nothing waits
            # for it, and the first scrape then finds every piece compressed.
            self._configured = True
            self._swap(self._built(trackers))
            return
        self._next = Frame(trackers, self._headers)
        self._steps = self._next.build()
        self._step_handle = self._call_soon(self._step)

    async def settled(self) -> None:
        """Return once the config last given to set_trackers() is the one served."""
        if self._next is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _step(self) -> None:
        """One slice of the next frame's build; the next slice waits for the loop's next turn."""
        self._step_handle = None
        steps, t0 = self._steps, time.perf_counter()
        assert steps is not None and self._next is not None
        for _ in steps:
            if time.perf_counter() - t0 > STEP_BUDGET:
                self._step_handle = self._call_soon(self._step)
                return
        self._swap(self._next)

    def _cancel_build(self) -> None:
        if self._step_handle is not None:
            self._step_handle.cancel()
        if self._next is not None:
            self._next.release()
        self._step_handle, self._steps, self._next = None, None, None

    def _swap(self, frame: Frame) -> None:
        old = self._live
        self._live, self._next, self._steps = frame, None, None
        if old is not frame:
            self._retire(old)
        if frame.dirty_chunks:
            self._arm_sweep()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _retire(self, frame: Frame) -> None:
        """Let go of a frame no longer served: in slices on the event loop (its teardown), else at once."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            frame.release()
            return
        self._teardowns.append(frame.teardown())
        if self._teardown_handle is None:
            self._teardown_handle = self._call_soon(self._teardown_step)

    def _teardown_step(self) -> None:
        """One slice of the retired frames' teardowns."""
        self._teardown_handle = None
        t0 = time.perf_counter()
        while self._teardowns:
            for _ in self._teardowns[0]:
                if time.perf_counter() - t0 > STEP_BUDGET:
                    self._teardown_handle = self._call_soon(self._teardown_step)
                    return
            self._teardowns.pop(0)
        if self._after_teardown is not None:
            self._after_teardown()

    def update(self, gate: Gate, st: GateState, uptime_window: float, now: float | None = None) -> None:
        """Re-render one gate's changing lines from its state (called after each evaluation), in the
        frame served and in the one being built."""
        if self._live.update(gate, st, uptime_window, now):
            self._arm_sweep()
        if self._next is not None:
            self._next.update(gate, st, uptime_window, now)

    def _arm_sweep(self) -> None:
        if self._sweep_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no event loop (a script or test): pieces are rendered at the next scrape
            self._sweep_timer = loop.call_later(SWEEP_EVERY, self._sweep_due)

    def _sweep_due(self) -> None:
        # A sweep renders for up to SWEEP_BUDGET: not in the turns of a request being answered.
        self._sweep_timer = self._call_soon(self._sweep)

    def _sweep(self) -> None:
        self._sweep_timer = None
        self._live.sweep(SWEEP_BUDGET)
        if self._live.dirty_chunks:
            self._arm_sweep()

    def render(self, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """A whole scrape: the text format (or OpenMetrics), gzip-compressed if asked."""
        t0 = time.perf_counter()
        out = self._live.render(openmetrics, gzip, render_tail(self._tail_registry, openmetrics))
        self.last_render_seconds = time.perf_counter() - t0
        return out


def exposition_for(runtime: Runtime) -> Exposition:
    """The runtime's exposition: attached on first use, its tail the runtime's own-metrics registry."""
    for view in runtime.views:
        if isinstance(view, Exposition):
            return view
    expo = Exposition(registry=runtime.registry, after_teardown=pauses.trim_heap if runtime.trim_heap else None,
                      call_soon=runtime.foreground.call_soon)
    runtime.attach(expo)
    return expo
