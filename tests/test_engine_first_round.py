"""The first round after a start of thousands of gates is spread (not queued), and ready comes early.

The due times are read off a scheduler on a fixed clock; the run uses driven time (looptime).
"""

from __future__ import annotations

import asyncio

import pytest

from exporter.engine.scheduler import FIRST_ROUND_RATE, FIRST_RUN_SPREAD, Scheduler
from exporter.model import Result
from tests.test_scheduler import config, ctx_for, run_for, sleep_kind  # noqa: F401 - the fixture is used


def test_a_first_round_of_thousands_is_spread_at_the_first_round_rate():
    n = 3000
    c = config("".join(f"- {{id: g{i}, interval: 15s, timeout: 1s, sleep: {{}}}}\n" for i in range(n)))
    now = [100.0]
    sched = Scheduler(ctx_for, lambda g, r: None, clock=lambda: now[0])
    sched.set_gates(c.gates)
    due = sorted(entry[0] - 100.0 for entry in sched._heap)  # the first runs' due times, from start
    # 3,000 gates over 3 s in config order (not 0.5 s and a 6 s queue behind the concurrency limit)
    assert len(due) == n and due[0] == 0.0 and due[-1] == pytest.approx(n / FIRST_ROUND_RATE, abs=0.01)
    per_second = [sum(1 for d in due if k <= d < k + 1) for k in range(3)]
    assert all(abs(c - FIRST_ROUND_RATE) <= 1 for c in per_second), per_second
    assert not sched.ready  # until the first half second's gates have been dispatched
    # A reload that changes nothing schedules nothing new.
    sched.set_gates(c.gates)
    assert len(sched._heap) == n


@pytest.mark.looptime
async def test_few_gates_all_run_in_the_first_half_second():
    c = config("".join(f"- {{id: g{i}, interval: 30s, timeout: 1s, sleep: {{}}}}\n" for i in range(10)))
    results: list[Result] = []
    sched = Scheduler(ctx_for, lambda g, r: results.append(r), clock=asyncio.get_running_loop().time)
    sched.set_gates(c.gates)
    await run_for(sched, FIRST_RUN_SPREAD + 0.06)
    assert len(results) == 10 and sched.ready
