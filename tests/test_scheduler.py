"""The scheduler: own interval per gate, timeouts, concurrency limit, no gate delays another.

Time is driven, not slept: looptime fast-forwards the event loop's clock whenever every task waits,
and the scheduler reads that clock (clock=loop.time), so 2.2 s of schedule take no wall time and
the counts below are exact.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest

from exporter import probes
from exporter.config.fields import Duration, opt
from exporter.config.model import parse_config
from exporter.engine.scheduler import Scheduler
from exporter.model import Result
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind


@dataclass(frozen=True)
class SleepSpec:
    """A test probe: sleeps, then passes, fails, errors or raises."""

    sleep: Duration = opt(0.0)
    mode: str = opt("pass")


RUNNING = {"now": 0, "max": 0}


async def sleep_probe(spec: SleepSpec, ctx: ProbeContext) -> Measurement:
    RUNNING["now"] += 1
    RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        await asyncio.sleep(spec.sleep)
    finally:
        RUNNING["now"] -= 1
    if spec.mode == "fail":
        return Measurement({"value": 0.0}, ok=False, message="it failed")
    if spec.mode == "error":
        raise ProbeError("cannot measure")
    if spec.mode == "raise":
        raise RuntimeError("bug in probe")
    return Measurement({"value": 1.0})


@pytest.fixture(autouse=True)
def sleep_kind(monkeypatch: pytest.MonkeyPatch):
    kind = ProbeKind("sleep", SleepSpec, sleep_probe, ("value",), timeout_outcome="fail")
    monkeypatch.setitem(probes.KINDS, "sleep", kind)
    RUNNING.update(now=0, max=0)


def config(gates: str):
    body = "".join("      " + line.strip() + "\n" for line in gates.strip().splitlines())
    return parse_config("tracker: t\nphases:\n- id: p\n  steps:\n  - id: s\n    gates:\n" + body)


def ctx_for(gate):
    return ProbeContext(gate_id=gate.id, timeout=gate.timeout)


pytestmark = pytest.mark.looptime


def scheduler(results: list[tuple[float, Result]], **kw) -> Scheduler:
    """A scheduler on the loop's (driven) clock that records each result with the loop time it arrived."""
    loop = asyncio.get_running_loop()
    return Scheduler(ctx_for, lambda g, r: results.append((loop.time(), r)), clock=loop.time, **kw)


async def run_for(sched: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def of(results: list[tuple[float, Result]], gate: str) -> list[tuple[float, Result]]:
    return [(t, r) for t, r in results if r.gate == gate]


async def test_each_gate_on_its_own_interval_and_slow_gate_does_not_delay_fast():
    c = config("""
    - {id: fast, interval: 200ms, timeout: 100ms, sleep: {}}
    - {id: slow, interval: 2s, timeout: 2s, sleep: {sleep: 1500ms}}
""")
    results: list[tuple[float, Result]] = []
    sched = scheduler(results, max_concurrency=4, first_run_spread=0.1)
    sched.set_gates(c.gates)
    start = asyncio.get_running_loop().time()
    await run_for(sched, 2.1)
    fast = [t - start for t, _ in of(results, "fast")]
    # First run at 0 (its slot in the spread), then every 200 ms on the tick grid, whatever `slow` does.
    assert len(fast) == 11, fast
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    assert all(g == pytest.approx(0.2, abs=0.051) for g in gaps), gaps  # at most one dispatch tick of lag
    assert [r.outcome for _, r in of(results, "slow")] == ["pass"]
    assert of(results, "slow")[0][0] - start == pytest.approx(0.05 + 1.5, abs=0.051)


async def test_timeout_is_enforced_and_mapped_to_kind_outcome():
    c = config("- {id: hang, interval: 1s, timeout: 200ms, sleep: {sleep: 30s}}\n")
    results: list[tuple[float, Result]] = []
    sched = scheduler(results)
    sched.set_gates(c.gates)
    start = asyncio.get_running_loop().time()
    await run_for(sched, 1.0)
    assert len(results) == 1
    at, result = results[0]
    assert result.outcome == "fail" and result.message == "timed out after 200ms"
    assert at - start == pytest.approx(0.2, abs=0.01), "ended at the timeout, not at the probe's 30 s"
    assert RUNNING["now"] == 0, "the hung probe was cancelled"


async def test_probe_exceptions_are_error_outcomes_and_scheduler_survives():
    c = config("""
    - {id: boom, interval: 200ms, timeout: 100ms, sleep: {mode: raise}}
    - {id: err, interval: 200ms, timeout: 100ms, sleep: {mode: error}}
    - {id: bad, interval: 200ms, timeout: 100ms, sleep: {mode: fail}}
""")
    results: list[tuple[float, Result]] = []
    sched = scheduler(results)
    sched.set_gates(c.gates)
    await run_for(sched, 1.0)
    by = {r.gate: r for _, r in results}
    assert by["boom"].outcome == "error" and by["boom"].message == "RuntimeError: bug in probe"
    assert by["err"].outcome == "error" and by["err"].message == "cannot measure"
    assert by["bad"].outcome == "fail" and by["bad"].message == "it failed"
    assert len(of(results, "boom")) == 5, "kept running after the exception"
    assert sched.faults.counts["probe"] == 5, "an unexpected exception is counted; a ProbeError is not"


async def test_global_concurrency_limit():
    gates = "".join(f"    - {{id: g{i}, interval: 5s, timeout: 1s, sleep: {{sleep: 300ms}}}}\n" for i in range(20))
    c = config(gates)
    results: list[tuple[float, Result]] = []
    sched = scheduler(results, max_concurrency=3, first_run_spread=0.2)
    sched.set_gates(c.gates)
    start = asyncio.get_running_loop().time()
    await run_for(sched, 4.0)
    assert RUNNING["max"] == 3
    assert len(results) == 20
    # 20 runs of 300 ms, 3 at a time: 7 rounds, so the last ends about 2.1 s in (plus dispatch ticks).
    assert results[-1][0] - start == pytest.approx(2.1, abs=0.25)


async def test_reload_keeps_unchanged_gates_and_drops_removed():
    c1 = config("""
    - {id: keep, interval: 300ms, timeout: 100ms, sleep: {}}
    - {id: gone, interval: 300ms, timeout: 100ms, sleep: {}}
""")
    c2 = config("""
    - {id: keep, interval: 300ms, timeout: 100ms, sleep: {}}
    - {id: new, interval: 300ms, timeout: 100ms, sleep: {}}
""")
    results: list[tuple[float, Result]] = []
    sched = scheduler(results)
    sched.set_gates(c1.gates)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(1.0)
    assert sched.ready
    keep_before = [t for t, _ in of(results, "keep")]
    sched.set_gates(c2.gates)
    assert not sched.ready  # `new` not dispatched yet
    mark = len(results)
    await asyncio.sleep(1.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    after = {r.gate for _, r in results[mark:]}
    assert after == {"keep", "new"}
    assert sched.ready
    keep = [t for t, _ in of(results, "keep")]
    gaps = [b - a for a, b in itertools.pairwise(keep)]
    assert len(keep) > len(keep_before) and all(g == pytest.approx(0.3, abs=0.051) for g in gaps), \
        "an unchanged gate keeps its timing across the reload"


async def test_lag_is_measured():
    c = config("- {id: g, interval: 100ms, timeout: 50ms, sleep: {}}\n")
    results: list[tuple[float, Result]] = []
    sched = scheduler(results)
    sched.set_gates(c.gates)
    await run_for(sched, 0.75)
    assert sched.started == 8
    # The driven clock makes lag exactly what the dispatch tick adds: under one tick.
    assert 0 <= sched.lag_quantile(0.99) <= 0.05 + 1e-9


async def test_a_late_loop_skips_whole_intervals_and_keeps_the_phase():
    c = config("- {id: g, interval: 100ms, timeout: 50ms, sleep: {}}\n")
    results: list[tuple[float, Result]] = []
    loop = asyncio.get_running_loop()
    now = [loop.time()]
    sched = Scheduler(ctx_for, lambda g, r: results.append((now[0], r)), clock=lambda: now[0])
    sched.set_gates(c.gates)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(0.2)  # the first run (due at once) is dispatched
    assert sched.started == 1
    start = now[0]
    now[0] += 1.05  # the process was stopped for a second: the slots at 0.1 .. 1.0 passed
    sched._wake.set()
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sched.started == 2, "the overdue run starts once, late"
    assert sched.skipped == 9, "the other nine passed slots are skipped, not run in a burst"
    assert sched._heap[0][0] == pytest.approx(start + 1.1), "the next run keeps the gate's phase"
