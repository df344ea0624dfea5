"""The status page of a sharded set with a shard that did not answer: its gates say "Unknown", never "Pass".

The gathered whole (web/whole.py) is put on each request as the peers middleware does; the page,
its step fragment and the JSON document then agree on which gates are unknown.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from aiohttp import web

from exporter.engine.runtime import Runtime, load_configs
from exporter.engine.scheduler import Scheduler
from exporter.model import ERROR, PASS, Result
from exporter.state.memory import GateState, State
from exporter.web.app import make_app
from exporter.web.whole import WHOLE_KEY, Missing, Whole

CONFIG = """
tracker: page
phases:
  - id: build
    steps:
      - id: ci
        gates:
          - {id: api, tier: critical, http: {url: "http://127.0.0.1:1/"}, expect: "status == 200"}
          - {id: cov, tier: critical, coverage: {path: cov.json}, expect: ">= 85%"}
"""
MISSING = Missing(2, "http://127.0.0.12:9916", "connection refused")


@pytest.fixture
async def client(aiohttp_client, tmp_path: Path):
    path = tmp_path / "t.yml"
    path.write_text(CONFIG)
    runtime = Runtime([str(path)])
    runtime.scheduler = Scheduler(lambda g: None, lambda g, r: None)  # type: ignore[arg-type,return-value]
    runtime.apply(load_configs([str(path)]))
    now = time.time()
    state = State()
    state.record(Result("api", PASS, now, 0.01, {"status": 200}))
    # As the peers gathering leaves it: an error in the merged state, the gate named in `unknown`.
    message = f"unknown: shard 2 ({MISSING.url}) did not answer: {MISSING.error}"
    state.gates["cov"] = GateState(result=Result("cov", ERROR, now, 0.0, {}, message))

    @web.middleware
    async def gathered(request: web.Request, handler):  # type: ignore[no-untyped-def]
        request[WHOLE_KEY] = Whole(dict(runtime.trackers), {"page": state}, {"page": {"cov": MISSING}}, (MISSING,))
        return await handler(request)

    return await aiohttp_client(make_app(runtime, middlewares=[gathered]))


def _row(html: str, gate: str) -> str:
    m = re.search(rf'<tr data-gate="{gate}" data-status="(\w+)" data-tier[^>]*>(.*?)</tr>', html, re.S)
    assert m, html
    return m[1] + " " + m[2]


async def test_overview_and_step_say_unknown_with_the_shard(client):
    html = await (await client.get("/")).text()
    row = _row(html, "cov")
    assert row.startswith("unknown ") and '<span class="badge s-unknown">' in row and ">Unknown</span>" in row
    assert "shard 2 (http://127.0.0.12:9916) did not answer: connection refused" in row
    assert _row(html, "api").startswith("pass ")
    blockers = re.findall(r'<tr data-gate="(\w+)" data-status="\w+">', html)  # blocker rows have no data-tier
    assert "cov" not in blockers  # as in the JSON document: an unknown gate blocks nothing it is known to block

    fragment = await (await client.get("/phases/build/steps/ci?partial=1")).text()
    assert _row(fragment, "cov").startswith("unknown ") and ">Unknown</span>" in fragment

    doc = json.loads(await (await client.get("/api/progress/status")).text())
    assert {g["id"]: g["status"] for g in doc["gates"]} == {"api": "pass", "cov": "unknown"}
    assert doc["unknown_gates"] == 1 and [s["shard"] for s in doc["unknown_shards"]] == [2]


async def test_unknown_has_its_own_colour_in_both_themes(client):
    css = await (await client.get("/assets/status.css")).text()
    assert ".s-unknown { background: var(--unknown); }" in css
    colours = re.findall(r"--(pass|unknown): (#[0-9a-f]{6});", css)
    light, dark = dict(colours[:2]), dict(colours[2:4])
    for theme in (light, dark):
        assert set(theme) == {"pass", "unknown"} and theme["unknown"] != theme["pass"]
