"""The HTTP endpoints, in process against a real runtime (aiohttp test server on loopback)."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import pytest

from exporter.engine.runtime import Runtime, load_configs
from exporter.web.app import make_app
from tests.conftest import parse_metrics, sample

GOOD = """
tracker: web
title: Web test
defaults: {interval: 1s, timeout: 500ms}
phases:
  - id: p1
    title: Phase 1
    steps:
      - id: s1
        title: Step 1
        team: Team A
        gates:
          - id: present
            tier: critical
            file: {path: /etc/hostname}
          - id: absent
            tier: important
            file: {path: /nonexistent/file}
"""


async def wait_until(pred, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    path = tmp_path / "gates.yml"
    path.write_text(GOOD)
    runtime = Runtime([str(path)])
    clients = {}

    async def make(lifecycle: bool = False, start: bool = True):
        if start:
            await runtime.start(load_configs([str(path)]))
        c = await aiohttp_client(make_app(runtime, lifecycle=lifecycle))
        c.runtime, c.path = runtime, path
        clients["c"] = c
        return c

    yield make
    await runtime.stop()


async def test_ready_only_after_every_gate_scheduled(client):
    c = await client(start=False)
    assert (await c.get("/-/ready")).status == 503
    assert (await c.get("/-/healthy")).status == 200
    await c.runtime.start(load_configs([str(c.path)]))
    await wait_until(lambda: c.runtime.ready)
    assert (await c.get("/-/ready")).status == 200


async def test_metrics_formats(client):
    c = await client()
    await wait_until(lambda: all(s.result for s in c.runtime.states["web"].gates.values()) and
                     len(c.runtime.states["web"].gates) == 2)
    r = await c.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    m = parse_metrics(await r.text())
    assert sample(m, "gate_passed", gate="present") == 1
    assert sample(m, "gate_passed", gate="absent") == 0
    assert sample(m, "qualitygate_config_last_reload_successful") == 1
    assert sample(m, "qualitygate_build_info") == 1
    assert sample(m, "process_resident_memory_bytes") > 0

    r = await c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0",
                                         "Accept-Encoding": "identity"})
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert (await r.text()).endswith("# EOF\n")

    r = await c.get("/metrics", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert r.headers["Content-Encoding"] == "gzip"
    assert b"gate_passed" in gzip.decompress(await r.read())


async def test_progress_status_shape(client):
    c = await client()
    await wait_until(lambda: len([s for s in c.runtime.states["web"].gates.values() if s.result]) == 2)
    doc = await (await c.get("/api/progress/status")).json()
    assert set(doc) >= {"tracker", "title", "generated_at", "overall_completion", "phase_status", "step_completion",
                        "quality_gates", "gates", "blockers"}
    assert doc["tracker"] == "web" and doc["title"] == "Web test"
    assert doc["generated_at"].endswith("Z")
    assert doc["overall_completion"] == 0.5
    assert doc["phase_status"] == [
        {"id": "p1", "title": "Phase 1", "completion": 0.5, "status": "in_progress", "gates": 2}]
    assert doc["step_completion"][0]["team"] == "Team A"
    assert doc["quality_gates"]["critical"] == {"passed": 1, "failed": 0, "error": 0, "pending": 0, "total": 1}
    assert doc["quality_gates"]["important"]["failed"] == 1
    gate = {g["id"]: g for g in doc["gates"]}
    assert gate["absent"]["status"] == "fail" and gate["absent"]["message"] == "/nonexistent/file: no such file"
    assert gate["present"]["last_pass"] is not None
    assert [b["gate"] for b in doc["blockers"]] == ["absent"]
    assert doc["blockers"][0]["since"].endswith("Z")


async def test_gates_api_and_unknown_ids(client):
    c = await client()
    await wait_until(lambda: c.runtime.ready)
    await asyncio.sleep(0.3)
    doc = await (await c.get("/api/gates")).json()
    assert [g["id"] for g in doc["gates"]] == ["present", "absent"]
    r = await c.get("/api/gates/present")
    assert r.status == 200
    detail = await r.json()
    assert detail["interval_seconds"] == 1.0
    assert detail["history"] and detail["history"][0]["outcome"] == "pass"
    assert (await c.get("/api/gates/nope")).status == 404
    assert (await c.get("/api/gates/..%2F..%2Fetc%2Fpasswd")).status == 404
    assert (await c.get("/api/progress/status?tracker=other")).status == 404


async def test_reload_needs_lifecycle_flag(client):
    c = await client(lifecycle=False)
    r = await c.post("/-/reload")
    assert r.status == 403


async def test_invalid_reload_keeps_old_config_then_valid_reload_applies(client):
    c = await client(lifecycle=True)
    c.path.write_text(GOOD.replace("tier: critical", "tier: urgent"))
    r = await c.post("/-/reload")
    assert r.status == 500
    body = await r.text()
    assert "tier: must be one of critical, important, enhancement, got 'urgent'" in body
    m = parse_metrics(await (await c.get("/metrics")).text())
    assert sample(m, "qualitygate_config_last_reload_successful") == 0
    assert sample(m, "gate_interval_seconds", gate="present", tier="critical") == 1, "old config still served"

    absent = "          - id: absent\n            tier: important\n            file: {path: /nonexistent/file}\n"
    c.path.write_text(GOOD.replace(absent, ""))
    r = await c.post("/-/reload")
    assert r.status == 200, await r.text()
    text = await (await c.get("/metrics")).text()
    m = parse_metrics(text)
    assert sample(m, "qualitygate_config_last_reload_successful") == 1
    assert 'gate="absent"' not in text
