"""The runtime's GC freeze policy (Runtime.freeze_gc, engine/pauses.py): what start-up and each reload make
is frozen out of the cyclic GC's full passes, and none of it is garbage kept alive that way: after reloads
that change every gate, no old Gate, Config, Frame or gate state is among the frozen objects, reachable or
not. Counted with the garbage collector, not timed."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import one_step_tracker
from exporter.config.model import Config, Gate
from exporter.engine import pauses
from exporter.engine.runtime import Runtime, load_configs
from exporter.exposition.frame import Frame
from exporter.state.memory import GateState
from exporter.web.app import make_app

OURS = (Gate, Config, Frame, GateState)


def gates_yaml(n: int, timeout: str) -> str:
    return "\n".join(f"- {{id: g{i}, file: {{path: /etc/hostname}}, interval: 60s, timeout: {timeout}}}"
                     for i in range(n))


@pytest.fixture
def unfrozen() -> Iterator[set[int]]:
    """Whatever a test froze is given back to the collector afterwards (the rest of the suite runs unfrozen).

    Gives the ids of the configs, gates, frames and states that earlier tests left alive: counts leave them
    out. They are kept alive here, so that their ids are not reused and they never turn up as garbage: an
    earlier test's runtime let go of in the middle of this one (its State, last held by its event loop) is
    not this runtime's doing, and freezing it is no fault of the code under test."""
    gc.unfreeze()  # first: anything an earlier test froze is collectable again
    gc.collect()
    earlier = [o for o in gc.get_objects() if type(o) in OURS]
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield {id(o) for o in earlier}
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)
    del earlier


def counts(objects: list[object], earlier: set[int]) -> dict[str, int]:
    """How many of each of OURS are among `objects`, leaving out those earlier tests left."""
    return {kind.__name__: sum(1 for o in objects if type(o) is kind and id(o) not in earlier) for kind in OURS}


async def test_reloads_freeze_what_lives_and_leave_no_frozen_garbage(aiohttp_client, tmp_path: Path, unfrozen):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(3, "1s")))
    runtime = Runtime([str(path)], freeze_gc=True)
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    try:
        before = counts(gc.get_objects(), unfrozen)
        await runtime.start(load_configs([str(path)]))
        assert gc.get_freeze_count() > 0, "start-up froze the config and the frame"
        assert counts(gc.get_objects(), unfrozen)["Gate"] == before["Gate"], "the running config's gates are frozen"
        assert (await client.get("/metrics")).status == 200
        threshold = gc.get_threshold()
        for n, timeout in ((5, "2s"), (5, "1s"), (4, "2s"), (5, "1s")):  # every gate changes every time
            path.write_text(one_step_tracker(gates_yaml(n, timeout)))
            frozen, interval = gc.get_freeze_count(), sys.getswitchinterval()
            assert (await client.post("/-/reload")).status == 200
            assert gc.get_freeze_count() != frozen, "the reload froze what it made"
            assert gc.get_threshold() == threshold, "full passes are held off only while a reload runs"
            assert sys.getswitchinterval() == interval, "the switch interval is back"
            assert (await client.get("/metrics")).status == 200
        assert [g.timeout for g in runtime.trackers["t"].gates] == [1.0] * 5
        # Frozen objects are invisible to get_objects() and never collected: hand them back and let
        # the collector say what of ours would have been garbage kept frozen.
        gc.unfreeze()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            garbage = counts(gc.garbage, unfrozen)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert garbage == dict.fromkeys(garbage, 0), "no config, frame or gate state was frozen as garbage"
        now = counts(gc.get_objects(), unfrozen)
        assert now["Gate"] - before["Gate"] == 5, "only the running config's gates are alive"
        assert now["Config"] - before["Config"] == 1
        assert now["Frame"] - before["Frame"] <= 1, "the frame served (the one before it is gone)"
    finally:
        await runtime.stop()


async def test_without_the_opt_in_nothing_is_frozen(aiohttp_client, tmp_path: Path, unfrozen):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(2, "1s")))
    runtime = Runtime([str(path)])
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    try:
        await runtime.start(load_configs([str(path)]))
        path.write_text(one_step_tracker(gates_yaml(3, "2s")))
        assert (await client.post("/-/reload")).status == 200
        assert gc.get_freeze_count() == 0
    finally:
        await runtime.stop()


async def test_a_failed_reload_still_gives_the_thresholds_back(tmp_path: Path, unfrozen):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(2, "1s")))
    runtime = Runtime([str(path)], freeze_gc=True)
    try:
        await runtime.start(load_configs([str(path)]))
        threshold, interval = gc.get_threshold(), sys.getswitchinterval()
        path.write_text("tracker: [unclosed\n")
        assert await runtime.reload(), "the broken config is refused"
        assert (gc.get_threshold(), sys.getswitchinterval()) == (threshold, interval)
        assert [g.id for g in runtime.trackers["t"].gates] == ["g0", "g1"]
    finally:
        await runtime.stop()


def test_reloading_holds_full_passes_and_shortens_the_switch_interval(unfrozen):
    import asyncio

    async def inside() -> tuple[tuple[int, int, int], float]:
        async with pauses.reloading(True):
            return gc.get_threshold(), sys.getswitchinterval()

    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    held, short = asyncio.run(inside())
    assert held[:2] == threshold[:2] and held[2] == pauses.HOLD
    assert short == pytest.approx(pauses.RELOAD_SWITCH_INTERVAL)
    assert gc.get_threshold() == threshold and sys.getswitchinterval() == interval
    assert gc.get_freeze_count() > 0, "what the reload made is frozen at its end"


def test_what_dies_during_a_reload_is_collected_not_frozen(unfrozen):
    """A cycle that became garbage during the reload (an exception and its traceback, say) is collected before
    the freeze: frozen, the collector would never see it again (a leak per reload)."""
    import asyncio
    import weakref

    class Node:
        pass

    async def reload_leaving_a_dead_cycle() -> weakref.ref[Node]:
        async with pauses.reloading(True):
            node = Node()
            node.me = node  # type: ignore[attr-defined]
            dead = weakref.ref(node)
            del node
        return dead

    dead = asyncio.run(reload_leaving_a_dead_cycle())
    assert dead() is None


async def test_serve_s_switch_interval_is_set_at_start_and_kept_across_a_reload(tmp_path: Path, unfrozen):
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(2, "1s")))
    before = sys.getswitchinterval()
    runtime = Runtime([str(path)], freeze_gc=True, switch_interval=pauses.SERVE_SWITCH_INTERVAL)
    try:
        await runtime.start(load_configs([str(path)]))
        assert sys.getswitchinterval() == pytest.approx(pauses.SERVE_SWITCH_INTERVAL)
        path.write_text(one_step_tracker(gates_yaml(3, "2s")))
        assert await runtime.reload() == []
        assert sys.getswitchinterval() == pytest.approx(pauses.SERVE_SWITCH_INTERVAL)
    finally:
        await runtime.stop()
    assert sys.getswitchinterval() == before, "stop() gives the previous interval back"


async def test_the_full_pass_is_in_prepare_and_start_makes_only_a_young_one(tmp_path: Path, unfrozen):
    """serve prepares before its listener opens: the full pass (100+ ms at 10,000 gates) comes there, so no
    scrape meets it; start(), once listening, collects the young generations only, then freezes."""
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(3, "1s")))
    runtime = Runtime([str(path)], freeze_gc=True)
    passes: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        before = counts(gc.get_objects(), unfrozen)["Gate"]
        runtime.prepare(load_configs([str(path)]))
        assert 2 in passes, "prepare() made a full pass"
        assert gc.get_freeze_count() > 0, "and froze the config"
        assert counts(gc.get_objects(), unfrozen)["Gate"] == before, "out of the collector's sight"
        frozen = gc.get_freeze_count()
        passes.clear()
        await runtime.start()
        assert 2 not in passes and 1 in passes, f"start() made young passes only: {passes}"
        assert gc.get_freeze_count() >= frozen, "and froze what came since"
    finally:
        gc.callbacks.remove(seen)
        await runtime.stop()


def test_trim_heap_calls_glibc_s_malloc_trim_in_a_thread():
    thread = pauses.trim_heap()
    assert thread is not None, "glibc (Debian) has malloc_trim"
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize("trim", [True, False])
async def test_the_heap_is_trimmed_once_a_reload_s_old_frame_is_torn_down(aiohttp_client, tmp_path: Path,
                                                                          monkeypatch, trim: bool):
    from exporter.exposition.gates import exposition_for

    calls: list[int] = []
    real = pauses.trim_heap

    def trim_heap() -> object:
        calls.append(len(expo._teardowns))  # retired frames still being torn down, when called
        thread = real()
        assert thread is not None
        thread.join(10)
        return thread

    monkeypatch.setattr(pauses, "trim_heap", trim_heap)
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(gates_yaml(3, "1s")))
    runtime = Runtime([str(path)], trim_heap=trim)
    expo = exposition_for(runtime)
    client = await aiohttp_client(make_app(runtime, lifecycle=True))
    try:
        await runtime.start(load_configs([str(path)]))
        await asyncio.sleep(0.1)  # the empty frame served before the first config is retired too
        before = len(calls)
        path.write_text(one_step_tracker(gates_yaml(4, "2s")))
        assert (await client.post("/-/reload")).status == 200
        for _ in range(500):  # the old frame's teardown runs in slices on the loop (bounded: 5 s)
            if len(calls) > before or not trim:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert expo._teardowns == []
        assert calls[before:] == ([0] if trim else []), "once, after the teardown, and only when asked for"
        assert trim or calls == []
    finally:
        await runtime.stop()
