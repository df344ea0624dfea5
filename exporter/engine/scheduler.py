"""Runs every gate on its own interval: one timer heap, a global concurrency limit, per-gate timeouts."""

from __future__ import annotations

import array
import asyncio
import collections
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator

from exporter.config.model import Gate
from exporter.engine.evaluate import Faults, evaluate
from exporter.model import ERROR, Result
from exporter.probes import ProbeContext

log = logging.getLogger("qualitygate.scheduler")

FIRST_RUN_SPREAD = 0.5  # seconds: the shortest first round after start or reload; /-/ready waits for it
# A first round goes no faster than this many gates a second: 10,000 gates at 15 s run 667 a second
# once steady, and 2 cores manage about 1,700 http evaluations a second. Compressing 10,000 first
# runs into half a second queued them behind the concurrency limit for 6 s (p99 lag 6.3 s).
FIRST_ROUND_RATE = 1000.0
LAG_WINDOW = 60.0  # seconds of schedule-lag samples kept for the lag gauge
LAG_CACHE = 5.0  # seconds a computed lag quantile is reused (a minute of samples is 40,000 at 10,000 gates)
# Gates due within one tick start together: their I/O then shares event-loop wake-ups, which costs
# far less CPU per probe than one wake-up (and epoll call) per probe. It adds at most a tick of lag.
DISPATCH_TICK = 0.05
SET_GATES_BATCH = 256  # set_gates_steps(): gates between two yields (well under a millisecond)


class Scheduler:
    """Dispatches due gates from a heap; a slow gate never delays another's schedule."""

    def __init__(self, make_ctx: Callable[[Gate], ProbeContext], on_result: Callable[[Gate, Result], None],
                 max_concurrency: int = 128, clock: Callable[[], float] = time.monotonic,
                 first_run_spread: float = FIRST_RUN_SPREAD):
        self._make_ctx = make_ctx
        self._on_result = on_result
        self._clock = clock
        self._spread = first_run_spread
        self._max = max_concurrency
        # Due gates beyond the concurrency limit wait here, not as tasks blocked on a semaphore:
        # thousands of waiting tasks cost memory, and asyncio.Semaphore wakes them in O(waiters).
        self._queue: collections.deque[tuple[tuple[str, str], Gate, float, int]] = collections.deque()
        self._waiting: dict[tuple[str, str], int] = {}  # queued gate -> generation of its queued run
        self._heap: list[tuple[float, int, tuple[str, str], int]] = []
        self._gates: dict[tuple[str, str], Gate] = {}
        self._generation: dict[tuple[str, str], int] = {}
        self._phase: dict[tuple[str, str], float] = {}  # gates before their first run: where their slots lie
        self._early: set[tuple[str, str]] = set()  # gates whose first run is due in the first spread, not yet run
        self._incoming: dict[tuple[str, str], Gate] | None = None  # the gates of set_gates_steps() under way
        self._calls = 0  # set_gates_steps() calls: a later one supersedes an unfinished one
        self._pending = False  # a set_gates_steps() is under way
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._seq = 0
        # Lag samples per second of the last minute: compact arrays, not a tuple per evaluation.
        self._lags: collections.deque[tuple[int, array.array[float]]] = collections.deque()
        self._lag_cache: tuple[float, float, float] | None = None  # (computed at, q, value)
        self.skipped = 0  # evaluations not started because the previous one was still running
        self.faults = Faults()  # unexpected exceptions while evaluating, judging or recording, per stage
        self.started = 0

    # --- configuration ---------------------------------------------------------------------

    def set_gates(self, gates: Iterable[Gate]) -> None:
        """Schedule these gates at once (start-up, tests); see set_gates_steps()."""
        for _ in self.set_gates_steps(gates):
            pass

    def set_gates_steps(self, gates: Iterable[Gate], batch: int = SET_GATES_BATCH) -> Iterator[None]:
        """Schedule these gates: unchanged ones keep their timing, new or changed ones start soon.

        A generator that yields every `batch` gates, so that a reload of 10,000 changed gates is
        applied in slices between which the event loop serves scrapes (done at once it held the loop
        for 160-190 ms). The schedule is the one computed as of the first step, however the steps are
        spread: while they run, a gate not yet rescheduled that the new gates remove or change is not
        started (its old version), and a later call supersedes an unfinished one (whose steps stop).

        New or changed gates get their first runs spread, in config order, over the first round:
        `first_run_spread` seconds for a few gates, longer for many (at most FIRST_ROUND_RATE a
        second, at most the gate's interval), so that a first round of 10,000 gates does not queue
        behind the concurrency limit. Later runs sit at the gate's own slot of the interval. Slots
        follow config order, evenly spread over the interval: the load is smooth, and gates next to
        each other in the config run next to each other in time, which keeps the exposition's
        re-rendered pieces few.
        """
        self._calls += 1
        call = self._calls
        self._pending = True
        now = self._clock()
        new: dict[tuple[str, str], Gate] = {}
        for k, g in enumerate(gates):  # (nothing changes until the new gates are all known)
            new[(g.tracker, g.id)] = g
            if k % batch == batch - 1:
                yield
                if self._calls != call:
                    return  # superseded
        self._incoming = new
        for k, gid in enumerate([gid for gid in self._gates if gid not in new]):
            self._drop(gid)
            if k % batch == batch - 1:
                yield
                if self._calls != call:
                    return
        n = len(new)
        changed: list[tuple[int, tuple[str, str], Gate]] = []
        for pos, (gid, gate) in enumerate(new.items()):
            if self._gates.get(gid) != gate:
                changed.append((pos, gid, gate))
            if pos % batch == batch - 1:
                yield
                if self._calls != call:
                    return
        first_round = max(self._spread, len(changed) / FIRST_ROUND_RATE)
        for k, (pos, gid, gate) in enumerate(changed):
            if gid in self._gates:
                self._drop(gid)
            self._gates[gid] = gate
            gen = self._generation[gid] = self._generation.get(gid, 0) + 1
            frac = pos / n
            self._phase[gid] = now + frac * gate.interval
            offset = frac * min(gate.interval, first_round)
            if offset <= self._spread:
                self._early.add(gid)
            self._push(now + offset, gid, gen)
            if k % batch == batch - 1:
                self._wake.set()  # the first of them may be due already
                yield
                if self._calls != call:
                    return
        self._incoming, self._pending = None, False
        self._wake.set()

    def trigger(self, tracker: str, gate_id: str) -> bool:
        """Evaluate a gate now (after an attestation); its schedule goes on from now. False if not scheduled."""
        gid = (tracker, gate_id)
        if gid not in self._gates:
            return False
        gen = self._generation[gid] = self._generation[gid] + 1
        self._push(self._clock(), gid, gen)
        self._wake.set()
        return True

    def _drop(self, gid: tuple[str, str]) -> None:
        self._gates.pop(gid, None)
        self._phase.pop(gid, None)
        self._early.discard(gid)
        self._waiting.pop(gid, None)  # its queue entry is dropped when it comes up (old generation)
        self._generation[gid] = self._generation.get(gid, 0) + 1
        task = self._running.pop(gid, None)
        if task:
            task.cancel()

    def _push(self, due: float, gid: tuple[str, str], gen: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, gid, gen))

    @property
    def ready(self) -> bool:
        """Every configured gate is scheduled, and those of the first `first_run_spread` seconds have been
        dispatched (all of them for a few gates; for thousands, the rest follow within the first round)."""
        return not self._early and not self._pending

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Dispatch due gates until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    self._dispatch(now)
                if self._lag_cache is None or now - self._lag_cache[0] >= LAG_CACHE:
                    self.lag_quantile()  # refreshed here, so that a scrape finds it ready
                # One timer for the earliest due gate (not a timeout task per sleep), at a tick boundary.
                timer = None
                if self._heap:
                    due = self._heap[0][0]
                    wake = math.ceil(due / DISPATCH_TICK) * DISPATCH_TICK if DISPATCH_TICK > 0 else due
                    wake = max(wake, due)  # the product can round below `due`: never wake before it
                    timer = loop.call_later(max(0.0, wake - now), self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        finally:
            await self.stop()

    def _dispatch(self, now: float) -> None:
        """Start the gate at the top of the heap and push its next run."""
        due, _, gid, gen = heapq.heappop(self._heap)
        if self._generation.get(gid) != gen:
            return  # removed or rescheduled since this entry was pushed
        gate = self._gates[gid]
        phase = self._phase.pop(gid, None)
        if phase is not None:  # after the first run: the gate's own slot, at least one interval later
            self._early.discard(gid)
            nxt = phase + max(0.0, math.ceil((due + gate.interval - phase) / gate.interval - 1e-9)) * gate.interval
        else:
            nxt = due + gate.interval
        if nxt <= now:  # we fell behind by whole intervals: skip them, keep the phase
            missed = int((now - nxt) // gate.interval) + 1
            self.skipped += missed
            nxt += missed * gate.interval
        self._push(nxt, gid, gen)
        if self._superseded(gid, gate):
            return  # set_gates_steps() is about to remove or reschedule it: its old version does not start
        if gid in self._running or self._waiting.get(gid) == gen:
            self.skipped += 1
            return
        # (A queued run of an older generation, superseded by trigger(), is replaced by this one.)
        if len(self._running) < self._max:
            self._waiting.pop(gid, None)
            self._start(gid, gate, due, now)
        else:
            self._queue.append((gid, gate, due, gen))
            self._waiting[gid] = gen

    def _start(self, gid: tuple[str, str], gate: Gate, due: float, now: float) -> None:
        second = int(now)
        if not self._lags or self._lags[-1][0] != second:
            self._lags.append((second, array.array("d")))
        self._lags[-1][1].append(now - due)
        self.started += 1
        self._running[gid] = asyncio.create_task(self._evaluate(gid, gate), name=f"gate:{gid[0]}/{gid[1]}")

    def _start_waiting(self) -> None:
        """Give free slots to queued gates, oldest first."""
        while self._queue and len(self._running) < self._max:
            gid, gate, due, gen = self._queue.popleft()
            if self._waiting.get(gid) != gen or self._generation.get(gid) != gen:
                continue  # removed, rescheduled or superseded since it was queued
            del self._waiting[gid]
            if not self._superseded(gid, gate):
                self._start(gid, gate, due, self._clock())

    def _superseded(self, gid: tuple[str, str], gate: Gate) -> bool:
        """Whether set_gates_steps(), under way, removes or changes this gate (not rescheduled yet)."""
        incoming = self._incoming
        if incoming is None:
            return False
        new = incoming.get(gid)
        return new is not gate and new != gate

    async def _evaluate(self, gid: tuple[str, str], gate: Gate) -> None:
        try:
            try:
                ctx = self._make_ctx(gate)
            except Exception as exc:  # noqa: BLE001 - no context, no measurement: this gate's error
                self.faults.note("probe", gate)
                message = f"internal error: {type(exc).__name__}: {exc}"
                result = Result(gate.id, ERROR, time.time(), 0.0, message=message)
            else:
                result = await evaluate(gate, ctx, self.faults)
            if self._gates.get(gid) is gate:
                self._record(gate, result)
        finally:
            if self._running.get(gid) is asyncio.current_task():
                del self._running[gid]
            self._start_waiting()

    def _record(self, gate: Gate, result: Result) -> None:
        """Hand a result on; if that raises, the gate shows an error outcome, never its old status."""
        try:
            self._on_result(gate, result)
        except Exception as exc:  # noqa: BLE001 - a bug in recording must not keep a stale pass
            self.faults.note("record", gate)
            failed = Result(gate.id, ERROR, result.started, result.duration,
                            message=f"internal error recording the result: {type(exc).__name__}: {exc}")
            try:
                self._on_result(gate, failed)
            except Exception:  # counted and logged above; the scheduler goes on
                log.exception("recording the error outcome failed too", extra={"kv": {"gate": gate.id}})

    async def stop(self) -> None:
        """Cancel every in-flight evaluation and wait for them (probes clean up on cancel)."""
        self._queue.clear()
        self._waiting.clear()
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    def lag_quantile(self, q: float = 0.99) -> float:
        """The q-quantile of schedule lag (start minus due time) over the last minute."""
        now = self._clock()
        cached = self._lag_cache
        if cached is not None and cached[1] == q and now - cached[0] < LAG_CACHE:
            return cached[2]
        cutoff = now - LAG_WINDOW
        while self._lags and self._lags[0][0] + 1 <= cutoff:
            self._lags.popleft()
        n = sum(len(lags) for _, lags in self._lags)
        if not n:
            return 0.0
        # The value at rank int(q * n) of the sorted samples, found among the largest ones only.
        top = heapq.nlargest(n - min(n - 1, int(q * n)), itertools.chain.from_iterable(lags for _, lags in self._lags))
        value = top[-1]
        self._lag_cache = (now, q, value)
        return value

    @property
    def in_flight(self) -> int:
        """Evaluations running now."""
        return len(self._running)
