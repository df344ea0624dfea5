"""The scheduler: own interval per gate, timeouts, concurrency limit, no gate delays another."""

from __future__ import annotations

import asyncio
import itertools
import time
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


async def run_for(sched: Scheduler, seconds: float) -> None:
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_each_gate_on_its_own_interval_and_slow_gate_does_not_delay_fast():
    c = config("""
    - {id: fast, interval: 200ms, timeout: 100ms, sleep: {}}
    - {id: slow, interval: 2s, timeout: 2s, sleep: {sleep: 1500ms}}
""")
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r), max_concurrency=4, first_run_spread=0.1)
    sched.set_gates(c.gates)
    await run_for(sched, 2.2)
    fast = [r for r in results if r.gate == "fast"]
    # Started within the first 200 ms, then every 200 ms: about 10 runs in 2.2 s, regardless of `slow`.
    assert 8 <= len(fast) <= 12, len(fast)
    gaps = [b.started - a.started for a, b in itertools.pairwise(fast)]
    assert max(gaps) < 0.5, gaps
    assert [r.outcome for r in results if r.gate == "slow"] == ["pass"]


async def test_timeout_is_enforced_and_mapped_to_kind_outcome():
    c = config("- {id: hang, interval: 1s, timeout: 200ms, sleep: {sleep: 30s}}\n")
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r))
    sched.set_gates(c.gates)
    t0 = time.monotonic()
    await run_for(sched, 1.0)
    assert results and results[0].outcome == "fail"
    assert results[0].message == "timed out after 200ms"
    assert results[0].duration < 1.0
    assert time.monotonic() - t0 < 5
    assert RUNNING["now"] == 0, "the hung probe was cancelled"


async def test_probe_exceptions_are_error_outcomes_and_scheduler_survives():
    c = config("""
    - {id: boom, interval: 200ms, timeout: 100ms, sleep: {mode: raise}}
    - {id: err, interval: 200ms, timeout: 100ms, sleep: {mode: error}}
    - {id: bad, interval: 200ms, timeout: 100ms, sleep: {mode: fail}}
""")
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r))
    sched.set_gates(c.gates)
    await run_for(sched, 1.0)
    by = {r.gate: r for r in results}
    assert by["boom"].outcome == "error" and by["boom"].message == "RuntimeError: bug in probe"
    assert by["err"].outcome == "error" and by["err"].message == "cannot measure"
    assert by["bad"].outcome == "fail" and by["bad"].message == "it failed"
    assert sum(r.gate == "boom" for r in results) >= 3, "kept running after the exception"


async def test_global_concurrency_limit():
    gates = "".join(f"    - {{id: g{i}, interval: 5s, timeout: 1s, sleep: {{sleep: 300ms}}}}\n" for i in range(20))
    c = config(gates)
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r), max_concurrency=3, first_run_spread=0.2)
    sched.set_gates(c.gates)
    await run_for(sched, 4.0)
    assert RUNNING["max"] == 3
    assert len(results) == 20


async def test_reload_keeps_unchanged_gates_and_drops_removed():
    c1 = config("""
    - {id: keep, interval: 300ms, timeout: 100ms, sleep: {}}
    - {id: gone, interval: 300ms, timeout: 100ms, sleep: {}}
""")
    c2 = config("""
    - {id: keep, interval: 300ms, timeout: 100ms, sleep: {}}
    - {id: new, interval: 300ms, timeout: 100ms, sleep: {}}
""")
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r))
    sched.set_gates(c1.gates)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(1.0)
    assert sched.ready
    sched.set_gates(c2.gates)
    assert not sched.ready  # `new` not dispatched yet
    mark = len(results)
    await asyncio.sleep(1.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    after = {r.gate for r in results[mark:]}
    assert after == {"keep", "new"}
    assert sched.ready


async def test_lag_is_measured():
    c = config("- {id: g, interval: 100ms, timeout: 50ms, sleep: {}}\n")
    sched = Scheduler(ctx_for, lambda g, r: None)
    sched.set_gates(c.gates)
    await run_for(sched, 0.8)
    assert sched.started >= 3
    assert 0 <= sched.lag_quantile(0.99) < 0.5
