"""/metrics across a reload that changes every gate: each scrape shows the old config whole or the new one whole.

The new config's series are built in slices while the old ones go on being served (exposition/gates.py);
these tests scrape over HTTP between the slices (made tiny here so that there are many) and check every
answer, with results arriving during the build. No timing is asserted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from exporter.engine.runtime import Runtime, load_configs
from exporter.exposition import frame, gates
from exporter.exposition.gates import Exposition, exposition_for
from exporter.model import Result
from exporter.web.app import make_app
from tests.conftest import parse_metrics

N = 120
PER_STEP = 10


def config(step_prefix: str, ids: range, expect: str) -> str:
    lines = ["tracker: t", "defaults:", "  interval: 60s", "phases:", "  - id: p", "    steps:"]
    for k, i in enumerate(ids):
        if k % PER_STEP == 0:
            lines += [f"      - id: {step_prefix}-{k // PER_STEP:03d}", "        gates:"]
        lines += [f"          - id: g{i:04d}", "            file: {path: /etc/hostname}",
                  f'            expect: "{expect}"']
    return "\n".join(lines) + "\n"


OLD = config("old", range(0, N), "< 30d")
NEW = config("new", range(20, N + 20), "< 29d")  # every step renamed, every threshold changed, gates gone and new
OLD_IDS = {f"g{i:04d}" for i in range(0, N)}
NEW_IDS = {f"g{i:04d}" for i in range(20, N + 20)}


def shown(text: str) -> tuple[str, dict[str, dict[str, float]]]:
    """Which config a scrape shows ("old" or "new", asserting it is one whole) and each gate's samples."""
    per_gate: dict[str, dict[str, float]] = {}
    prefixes = set()
    for (name, labels), value in parse_metrics(text).items():
        ls = dict(labels)
        if "gate" in ls and name.startswith("gate_"):
            per_gate.setdefault(ls["gate"], {})[name + ls.get("result", "")] = value
            prefixes.add(ls["step"].split("-")[0])
    assert len(prefixes) == 1, f"a scrape mixes steps of both configs: {prefixes}"
    which = prefixes.pop()
    assert set(per_gate) == (OLD_IDS if which == "old" else NEW_IDS), "a gate is missing or left over"
    threshold = (30 if which == "old" else 29) * 86400
    for gid, samples in per_gate.items():
        assert samples["gate_threshold"] == threshold, f"{gid}: a threshold of the other config"
        assert samples["gate_info"] == 1 and "gate_interval_seconds" in samples, gid
    return which, per_gate


@pytest.fixture
def slices(monkeypatch):
    """Build slices of one small unit each: a reload of 120 gates takes hundreds of turns of the loop."""
    monkeypatch.setattr(gates, "STEP_BUDGET", 0.0)
    monkeypatch.setattr(frame, "GATES_PER_STEP", 2)


async def test_scrapes_during_a_reload_show_one_config_whole_and_current(aiohttp_client, tmp_path: Path, slices):
    path = tmp_path / "t.yml"
    path.write_text(OLD)
    runtime = Runtime([str(path)])
    runtime.prepare(load_configs([str(path)]))  # no scheduler running: only the results given below arrive
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    expo = exposition_for(runtime)
    config = runtime.trackers["t"]
    for i, g in enumerate(config.gates):
        runtime._on_result(g, Result(g.id, "pass", 1e9, 0.01, {"value": float(i)}))
    which, per_gate = shown(await (await client.get("/metrics")).text())
    assert which == "old" and per_gate["g0050"]["gate_value"] == 50

    path.write_text(NEW)
    reload = asyncio.ensure_future(client.post("/-/reload"))
    seen = {"old": 0, "new": 0}
    during_build = 0
    value = 1000.0
    kept = config.gate("g0060")  # in both configs
    while not reload.done():
        building = expo._next is not None
        value += 1
        runtime._on_result(kept, Result("g0060", "pass", 1e9, 0.01, {"value": value}))  # mid-build result
        which, per_gate = shown(await (await client.get("/metrics")).text())
        seen[which] += 1
        during_build += building
        assert per_gate["g0060"]["gate_value"] == value, f"{which} config shows a stale value"
        assert per_gate["g0060"]["gate_evaluations_totalpass"] == value - 1000 + 1
    response = await reload
    assert response.status == 200, await response.text()
    assert during_build >= 3, f"only {during_build} scrapes while the new config was built: the test tested nothing"
    which, per_gate = shown(await (await client.get("/metrics")).text())
    assert which == "new", "the reload answered before /metrics showed the new config"
    assert per_gate["g0060"]["gate_value"] == value
    assert per_gate["g0135"].get("gate_passed") is None  # new gate, never evaluated
    assert seen["old"] >= 1
    # The frame built in slices, with results arriving meanwhile, renders what a fresh one does.
    fresh = Exposition(registry=None)
    fresh.set_trackers([(c, runtime.states[n]) for n, c in runtime.trackers.items()])
    served = expo._live.render(False, False, b"")
    assert served == fresh.render()
    await runtime.stop()


async def test_a_reload_during_a_build_shows_the_last_config(aiohttp_client, tmp_path: Path, slices):
    path = tmp_path / "t.yml"
    path.write_text(OLD)
    runtime = Runtime([str(path)])
    runtime.prepare(load_configs([str(path)]))
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    expo = exposition_for(runtime)
    # Two configs given one after the other, the first still being built: the second wins, whole.
    configs = load_configs([str(path)])
    path.write_text(NEW)
    newer = load_configs([str(path)])
    runtime.apply(newer)
    assert expo._next is not None
    runtime.apply(configs)
    runtime.apply(newer)
    order = []
    while expo._next is not None:
        order.append(shown(await (await client.get("/metrics")).text())[0])
    assert order[:1] == ["old"]
    if "new" in order:
        assert "old" not in order[order.index("new"):], "an old scrape after a new one"
    await expo.settled()
    assert shown(await (await client.get("/metrics")).text())[0] == "new"
    await runtime.stop()


def test_without_an_event_loop_a_new_config_is_shown_at_once():
    from exporter.config.model import parse_config
    from exporter.state.memory import State

    expo = Exposition(registry=None)
    expo.set_trackers([(parse_config(OLD), State())])
    expo.set_trackers([(parse_config(NEW), State())])
    assert shown(expo.render().decode())[0] == "new"


async def test_the_frame_a_reload_replaces_is_let_go_of_in_slices_without_the_cyclic_gc(tmp_path: Path,
                                                                                       monkeypatch: pytest.MonkeyPatch):
    import gc
    import weakref

    from exporter.config.model import load_config
    from exporter.state.memory import State

    monkeypatch.setattr(frame, "TEARDOWN_BATCH", 7)
    monkeypatch.setattr(gates, "STEP_BUDGET", 0.0)  # one step a turn of the loop: many slices
    old_path, new_path = tmp_path / "old.yml", tmp_path / "new.yml"
    old_path.write_text(OLD)
    new_path.write_text(NEW)
    expo = Exposition(registry=None)
    expo.set_trackers([(load_config(str(old_path)), State())])
    retired = weakref.ref(expo._live)
    gate = weakref.ref(expo._live._trackers[0][0].gates[0])
    expo.set_trackers([(load_config(str(new_path)), State())])
    await expo.settled()
    assert retired() is not None and expo._teardowns, "the old frame is let go of in steps, after the swap"
    gc.disable()  # freed by reference counting alone: no cycle is left for the collector
    try:
        turns = 0
        while expo._teardowns:
            await asyncio.sleep(0)
            turns += 1
        assert turns > 3
        assert retired() is None and gate() is None, "the old frame and its config's gates are gone"
    finally:
        gc.enable()
