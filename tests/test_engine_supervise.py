"""Supervised tasks, failed reloads, healthy/503, own metrics and tracebacks in the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from conftest import one_step_tracker, parse_metrics, sample
from exporter import log as qlog
from exporter.engine import runtime as runtime_module
from exporter.engine.runtime import Runtime, load_configs
from exporter.engine.scheduler import Scheduler
from exporter.engine.supervise import Supervisor
from exporter.web.app import make_app

GATES = '- {id: g, file: {path: /etc/hostname}, interval: 200ms, timeout: 100ms}'


@pytest.mark.looptime
async def test_a_dying_task_is_logged_counted_and_restarted_with_backoff(caplog: pytest.LogCaptureFixture):
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) <= 4:
            raise RuntimeError(f"crash {len(starts)}")
        await asyncio.Event().wait()  # then runs for good

    sup = Supervisor(initial=1.0, maximum=4.0)
    t0 = loop.time()
    with caplog.at_level(logging.ERROR, "qualitygate.supervisor"):
        sup.start("flaky", flaky)
        await asyncio.sleep(100)
    assert [round(t - t0, 6) for t in starts] == [0, 1, 3, 7, 11], "backoff doubles up to its maximum"
    assert sup.restarts["flaky"] == 4 and sup.running("flaky")
    assert all(r.exc_info is not None for r in caplog.records) and len(caplog.records) == 4
    await sup.stop()
    assert not sup.running("flaky") and not sup.started("flaky")


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(GATES))
    return path


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_crashed_scheduler_makes_healthy_503_until_it_runs_again(
        aiohttp_client, config_path: Path, monkeypatch: pytest.MonkeyPatch):
    crash = {"on": False}
    dispatch = Scheduler._dispatch

    def maybe_crash(self: Scheduler, now: float) -> None:
        if crash["on"]:
            raise RuntimeError("scheduler bug")
        dispatch(self, now)

    monkeypatch.setattr(Scheduler, "_dispatch", maybe_crash)
    runtime = Runtime([str(config_path)])
    runtime.supervisor = Supervisor(initial=0.05, maximum=0.05)
    client = await aiohttp_client(make_app(runtime))
    try:
        await runtime.start(load_configs([str(config_path)]))
        await until(lambda: runtime.ready, "the first dispatch")
        assert (await client.get("/-/healthy")).status == 200
        crash["on"] = True
        await until(lambda: runtime.supervisor.restarts["scheduler"] >= 2, "restarts")
        # Dead between restarts, and dead again at once after each: never healthy while it crashes.
        await until(lambda: not runtime.healthy, "the scheduler to be down")
        r = await client.get("/-/healthy")
        assert r.status == 503 and "scheduler is not running" in await r.text()
        crash["on"] = False
        await until(lambda: runtime.healthy, "the scheduler to run again")
        assert (await client.get("/-/healthy")).status == 200
        m = parse_metrics(await (await client.get("/metrics")).text())
        assert sample(m, "qualitygate_task_restarts_total", task="scheduler") >= 2
        assert sample(m, "qualitygate_task_restarts_total", task="compact-uptime") == 0
        # ...and it evaluates again after the restarts.
        before = runtime.scheduler.started if runtime.scheduler else 0
        await until(lambda: runtime.scheduler is not None and runtime.scheduler.started > before + 1, "evaluations")
    finally:
        await runtime.stop()


async def test_a_reload_raising_anything_is_a_failed_reload(
        aiohttp_client, config_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = Runtime([str(config_path)])
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    try:
        await runtime.start(load_configs([str(config_path)]))

        def boom(paths: list[str]) -> list[object]:
            raise OverflowError("int too large to convert to float")

        monkeypatch.setattr(runtime_module, "load_configs", boom)
        r = await client.post("/-/reload")
        assert r.status == 500
        assert "OverflowError: int too large to convert to float" in await r.text()
        m = parse_metrics(await (await client.get("/metrics")).text())
        assert sample(m, "qualitygate_config_last_reload_successful") == 0
        assert list(runtime.trackers) == ["t"], "the old config keeps running"
        monkeypatch.undo()

        # An exception while applying a new config puts the running one back.
        config_path.write_text(one_step_tracker(GATES.replace("id: g", "id: h")))
        real_steps = Scheduler.set_gates_steps
        raised: list[bool] = []

        def fails_once(self: Scheduler, gates: object, *args: object) -> object:
            if not raised:  # the reload's (sliced) apply raises; putting the running config back does not
                raised.append(True)
                raise KeyError("x")
            return real_steps(self, gates, *args)

        monkeypatch.setattr(Scheduler, "set_gates_steps", fails_once)
        r = await client.post("/-/reload")
        assert r.status == 500 and "KeyError" in await r.text()
        monkeypatch.undo()
        assert [g.id for g in runtime.trackers["t"].gates] == ["g"]
        r = await client.post("/-/reload")
        assert r.status == 200
        m = parse_metrics(await (await client.get("/metrics")).text())
        assert sample(m, "qualitygate_config_last_reload_successful") == 1
        assert sample(m, "gate_interval_seconds", gate="h") == 0.2
    finally:
        await runtime.stop()


async def test_the_watcher_survives_a_reload_that_raises(config_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = Runtime([str(config_path)], watch_interval=0.05)
    calls = {"n": 0}
    real = runtime_module.load_configs

    def first_raises(paths: list[str]) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("alias bomb")
        return real(paths)

    try:
        await runtime.start(load_configs([str(config_path)]))
        monkeypatch.setattr(runtime_module, "load_configs", first_raises)
        # Edits until the watcher (which takes its first fingerprint once started) sees one.
        for i in range(200):
            if calls["n"]:
                break
            config_path.write_text(one_step_tracker(GATES.replace("id: g", f"id: second{i}")))
            await asyncio.sleep(0.05)
        await until(lambda: calls["n"] == 1 and not runtime.reload_ok, "the failed reload")
        assert runtime.supervisor.running("config-watch")
        config_path.write_text(one_step_tracker(GATES.replace("id: g", "id: third")))
        await until(lambda: runtime.reload_ok and runtime.trackers["t"].gates[0].id == "third", "the next reload")
        assert runtime.supervisor.restarts["config-watch"] == 0, "not even restarted: the reload failed, not the task"
    finally:
        await runtime.stop()


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_log_exception_carries_the_traceback(fmt: str):
    out = io.StringIO()
    qlog.setup("info", fmt, out)
    try:
        try:
            raise ValueError("deep inside")
        except ValueError:
            logging.getLogger("qualitygate.test").exception("it broke", extra=qlog.kv(gate="g"))
    finally:
        logging.getLogger().handlers.clear()
    line = out.getvalue()
    assert line.count("\n") == 1, "one event, one line"
    if fmt == "json":
        event = json.loads(line)
        assert event["err"] == "ValueError: deep inside"
        assert "Traceback (most recent call last)" in event["traceback"]
        assert "test_log_exception_carries_the_traceback" in event["traceback"]
    else:
        assert 'err="ValueError: deep inside"' in line
        assert 'traceback="Traceback (most recent call last):\\n' in line
        assert "in test_log_exception_carries_the_traceback" in line


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is installed by scripts/system-deps.sh")
async def test_own_metrics_are_clean_for_promtool_with_every_component(aiohttp_client, config_path: Path):
    from exporter.web.listener import ReadTimeouts

    runtime = Runtime([str(config_path)], shard=(1, 3))
    runtime.read_timeouts = ReadTimeouts()
    client = await aiohttp_client(make_app(runtime))
    try:
        await runtime.start(load_configs([str(config_path)]))
        text = await (await client.get("/metrics")).text()
        proc = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
        assert proc.returncode == 0 and not proc.stdout and not proc.stderr, proc.stdout + proc.stderr
        om = await (await client.get("/metrics", headers={"Accept": "application/openmetrics-text"})).text()
        families = {f.name: f.type for f in parse_openmetrics(om)}  # promtool reads only the text format
        assert families["qualitygate_task_restarts"] == families["qualitygate_evaluation_exceptions"] == "counter"
        m = parse_metrics(await (await client.get("/metrics")).text())
        assert sample(m, "qualitygate_shard_info", index="1", count="3") == 1
        assert sample(m, "qualitygate_http_read_timeouts_total", stage="head") == 0
        assert sample(m, "qualitygate_evaluation_exceptions_total", stage="record") == 0
        assert sample(m, "qualitygate_build_info") == 1
        assert sample(m, "process_cpu_seconds_total") is not None, "the default registry still follows"
    finally:
        await runtime.stop()
