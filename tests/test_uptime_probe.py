"""`uptime` gates: count-weighted pass ratio over a window, from memory and from a real state file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest

from exporter.config.model import parse_config
from exporter.engine.evaluate import evaluate
from exporter.model import Result
from exporter.probes import ProbeContext
from exporter.state.memory import State
from exporter.state.store import open_store
from tests.conftest import one_step_tracker, parse_metrics, sample, wait_for

NOW = 1_800_000_000.0

CONFIG = one_step_tracker("""
- {id: api, file: {path: /etc/hostname}}
- id: api-uptime
  uptime: {gate: api, window: 1d}
  expect: ">= 90%"
- id: api-uptime-default
  uptime: {gate: api}
  expect: "> 50%"
""", uptime_window="2d")


def evaluations(state: State, passed: int, failed: int, at: float) -> None:
    for i in range(passed + failed):
        state.record(Result("api", "pass" if i < passed else "fail", at + i * 0.001, 0.0))


async def run(gate_id: str, history, now: float = NOW):
    config = parse_config(CONFIG)
    gate = config.gate(gate_id)
    ctx = ProbeContext(gate_id=gate_id, timeout=5, history=history, uptime_window=config.uptime_window,
                       now=lambda: now)
    return await evaluate(gate, ctx)


async def test_count_weighted_not_time_weighted() -> None:
    state = State()
    # 12 hours ago a slow gate passed 10 times; in the last hour a fast one failed 90 times.
    evaluations(state, 10, 0, NOW - 12 * 3600)
    evaluations(state, 0, 90, NOW - 1800)
    r = await run("api-uptime", state)
    assert r.value == pytest.approx(10 / 100)  # time-weighted would be about 0.92
    assert r.outcome == "fail"
    assert r.message == "uptime 10 % is below 90 %"


async def test_window_excludes_older_evaluations_and_defaults_to_uptime_window() -> None:
    state = State()
    evaluations(state, 0, 30, NOW - 36 * 3600)  # outside 1d, inside the tracker's 2d
    evaluations(state, 19, 1, NOW - 3600)
    one_day = await run("api-uptime", state)
    assert one_day.value == pytest.approx(19 / 20) and one_day.outcome == "pass"
    two_days = await run("api-uptime-default", state)
    assert two_days.value == pytest.approx(19 / 50) and two_days.outcome == "fail"


async def test_no_evaluations_in_the_window_is_an_error_not_a_fail() -> None:
    state = State()
    evaluations(state, 5, 0, NOW - 3 * 86400)
    r = await run("api-uptime", state)
    assert r.outcome == "error" and "no evaluations of api" in r.message


async def test_no_history_at_all_is_an_error() -> None:
    r = await run("api-uptime", None)
    assert r.outcome == "error" and "history" in r.message


async def test_reads_the_state_file_when_not_serving(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    for i in range(40):
        store.record("t", Result("api", "pass" if i % 4 else "fail", NOW - 7200 + i * 60, 0.0))
    assert store.flush(30)
    store.close_sync()
    ro = open_store(str(tmp_path / "s.db"), read_only=True)
    r = await run("api-uptime", ro.history("t", None))
    assert r.value == pytest.approx(30 / 40) and r.outcome == "fail"
    ro.close_sync()


def test_uptime_through_a_real_serve_with_stored_history(tmp_path: Path, write_config, serve) -> None:
    """A state file holding a day of history: the served uptime gate reads it, count-weighted."""
    now = time.time()
    db = tmp_path / "state.db"
    store = open_store(str(db))
    # Nine hours ago: 100 passes; two hours ago: 300 fails (far more evaluations, a shorter time).
    for i in range(100):
        store.record("up", Result("api", "pass", now - 9 * 3600 + i, 0.01))
    for i in range(300):
        store.record("up", Result("api", "fail", now - 2 * 3600 + i, 0.01))
    assert store.flush(30)
    store.close_sync()
    # `api` is slow to evaluate (a command that sleeps) so no new evaluation lands while we look.
    config = write_config(one_step_tracker("""
        - id: api
          interval: 60s
          timeout: 50s
          command: {shell: "sleep 45"}
        - id: api-uptime
          interval: 1s
          timeout: 1s
          uptime: {gate: api, window: 1d}
          expect: ">= 99.9%"
    """, tracker="up", title="Uptime", uptime_window="30d"))
    s = serve(config, "--storage.path", str(db))

    def value():
        m = parse_metrics(s.get("/metrics")[1])
        return sample(m, "gate_value", gate="api-uptime")

    assert wait_for(value, timeout=30, what="uptime gate evaluated") == pytest.approx(100 / 400)
    m = parse_metrics(s.get("/metrics")[1])
    assert sample(m, "gate_passed", gate="api-uptime") == 0.0
    assert sample(m, "gate_probe_error", gate="api-uptime") == 0.0
    assert sample(m, "gate_uptime_ratio", gate="api") == pytest.approx(0.25)
    assert sample(m, "gate_objective_ratio", gate="api") == pytest.approx(0.999)
    detail = json.loads(s.get("/api/gates/api-uptime")[1])
    assert detail["message"].startswith("uptime 25 % is below 99.9 %")
    s.stop()
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_serving_runtime_coarsens_memory_buckets(tmp_path: Path, monkeypatch) -> None:
    """Memory coarsens like the file does, so 30 days of a 15 s gate stay about 100 buckets."""
    import exporter.engine.runtime as runtime_mod
    from exporter.engine.runtime import Runtime, load_configs

    monkeypatch.setattr(runtime_mod, "COMPACT_EVERY", 0.05)
    path = tmp_path / "t.yml"
    path.write_text(CONFIG)
    rt = Runtime([str(path)])
    rt.store = open_store(str(tmp_path / "s.db"))
    await rt.start(load_configs([str(path)]))
    try:
        st = rt.states["t"].get("api")
        now = time.time()
        for k in range(12 * 24 * 3):  # three days of 5-minute buckets, as if never compacted
            st.buckets[int((now - 3 * 86400) // 300 * 300 + k * 300)] = [1, 1]
        for _ in range(200):
            if len(st.buckets) < 80:
                break
            await asyncio.sleep(0.05)
        assert len(st.buckets) < 80
        assert sum(t for _, t in st.buckets.values()) >= 12 * 24 * 3  # nothing lost, only merged
    finally:
        await rt.stop()
