"""Scheduler.set_gates_steps(): a reload's new gates applied in slices give the schedule set_gates() gives
at once, and while the slices run no removed or changed gate starts in its old version. Time is driven
(a clock the test sets), never slept."""

from __future__ import annotations

import asyncio

from exporter.config.model import Gate, parse_config
from exporter.engine.scheduler import Scheduler
from exporter.model import Result
from exporter.probes.base import ProbeContext


def gates(spec: dict[str, str]) -> list[Gate]:
    """File gates by id, each with the interval given (e.g. {"a": "10s"})."""
    body = "".join(f"      - {{id: {gid}, file: {{path: /etc/hostname}}, interval: {iv}}}\n"
                   for gid, iv in spec.items())
    return list(parse_config("tracker: t\nphases:\n- id: p\n  steps:\n  - id: s\n    gates:\n" + body).gates)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def scheduler(clock: Clock, started: list[Gate] | None = None) -> Scheduler:
    def make_ctx(gate: Gate) -> ProbeContext:
        if started is not None:
            started.append(gate)
        return ProbeContext(gate_id=gate.id, timeout=gate.timeout)

    def on_result(gate: Gate, result: Result) -> None:
        pass

    return Scheduler(make_ctx, on_result, clock=clock)


def schedule(s: Scheduler) -> tuple[object, ...]:
    """Everything that decides when each gate runs next."""
    heap = sorted(s._heap)
    return heap, dict(s._phase), set(s._early), dict(s._generation), {k: g for k, g in s._gates.items()}


FIRST = {f"g{i:03d}": ("10s" if i % 3 else "30s") for i in range(40)}
# Ten gates removed, ten changed (their interval), ten kept, fifteen new; in a new order.
SECOND = {**{f"n{i:03d}": "20s" for i in range(15)},
          **{f"g{i:03d}": "15s" for i in range(10, 20)},
          **{f"g{i:03d}": FIRST[f"g{i:03d}"] for i in range(20, 40, 2)}}


def test_sliced_set_gates_gives_the_schedule_set_gates_gives_at_once():
    whole, sliced = Clock(100.0), Clock(100.0)
    a, b = scheduler(whole), scheduler(sliced)
    a.set_gates(gates(FIRST))
    b.set_gates(gates(FIRST))
    whole.t = sliced.t = 130.0
    a.set_gates(gates(SECOND))
    steps = b.set_gates_steps(gates(SECOND), batch=3)
    n = 0
    for _ in steps:
        n += 1
        sliced.t += 0.01  # time passes between slices: the schedule is still the one of the first step
        assert not b.ready, "not ready while the new gates are being scheduled"
    assert n > 10, "it did yield, every few gates"
    assert schedule(a) == schedule(b)
    assert {gid for _, gid in b._gates} == set(SECOND)
    assert b.ready is a.ready


async def test_while_slices_run_no_old_version_of_a_removed_or_changed_gate_starts():
    clock, started = Clock(0.0), []
    s = scheduler(clock, started)
    first = gates({"a": "10s", "b": "10s", "c": "10s"})
    s.set_gates(first)
    clock.t = 10.0  # every first run is due (and overdue)
    second = gates({"c": "10s", "a": "20s"})  # b removed, a changed, c kept
    steps = s.set_gates_steps(second, batch=1)
    while ("t", "b") in s._gates:
        next(steps)  # until b is dropped; a is not rescheduled yet
    assert s._gates[("t", "a")] is first[0]
    while s._heap and s._heap[0][0] <= clock.t:
        s._dispatch(clock.t)
    await asyncio.sleep(0)  # the started evaluations begin (and make their context)
    assert [g.id for g in started] == ["c"], "only the gate the new config keeps as it is started"
    for _ in steps:
        pass
    clock.t += 0.3  # a's first run, second of two new first runs, is at 0.25 s into the spread
    while s._heap and s._heap[0][0] <= clock.t:
        s._dispatch(clock.t)
    await asyncio.sleep(0)
    assert [(g.id, g.interval) for g in started] == [("c", 10.0), ("a", 20.0)]
    await s.stop()


def test_a_later_call_supersedes_an_unfinished_one():
    clock = Clock(50.0)
    s, ref = scheduler(clock), scheduler(Clock(50.0))
    s.set_gates(gates(FIRST))
    ref.set_gates(gates(FIRST))
    steps = s.set_gates_steps(gates(SECOND), batch=2)
    for _ in range(3):
        next(steps)  # part of SECOND applied, then given up: the running config goes back in place
    s.set_gates(gates(FIRST))
    assert list(steps) == [], "the superseded steps stop"
    assert {gid for _, gid in s._gates} == set(FIRST) and s._incoming is None
    # Every gate still has a current heap entry: none is lost by the half-applied reload.
    current = {gid for _, _, gid, gen in s._heap if s._generation[gid] == gen}
    assert {gid for _, gid in current} == set(FIRST)
    assert {k: g.interval for k, g in s._gates.items()} == {k: g.interval for k, g in ref._gates.items()}


def test_set_gates_is_applied_at_once_and_wakes_the_loop():
    s = scheduler(Clock(0.0))
    s._wake.clear()
    s.set_gates(gates({"a": "10s"}))
    assert s._wake.is_set() and s._incoming is None and set(s._gates) == {("t", "a")}
    asyncio.run(s.stop())
