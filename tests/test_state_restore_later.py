"""At start, stored histories load after outcomes, counters and uptime: a real SQLite file, a real thread."""

from __future__ import annotations

from pathlib import Path

from exporter.model import Result
from exporter.state.memory import HISTORY, State
from exporter.state.store import open_store
from tests.conftest import wait_for
from tests.test_storage_store import NOW, filled, results


def test_histories_follow_and_new_results_stay_newest(tmp_path: Path) -> None:
    rs = results("a", 80, NOW - 3 * 3600, 60) + results("b", 5, NOW - 100, 10)
    memory = State()
    for r in rs:
        memory.record(r)
    filled(tmp_path / "s.db", rs).close_sync()

    store = open_store(str(tmp_path / "s.db"))
    store.defer_histories = True
    restored = State()
    assert store.restore("t", restored) == 2
    # What the first evaluation and /metrics need is in at once.
    for gid in ("a", "b"):
        want, got = memory.gates[gid], restored.gates[gid]
        assert got.result == want.result and got.counts == want.counts and got.since == want.since
        assert got.uptime(86400, NOW) == want.uptime(86400, NOW)
    # An evaluation recorded while the histories load (the loop goes on) stays the newest entry.
    new = Result("a", "pass", NOW + 1, 0.002, {"value": 9.0, "size": 2.0})
    restored.record(new)
    wait_for(lambda: store.histories_pending == 0, timeout=10, what="histories restored")
    a = list(restored.gates["a"].history)
    assert a == [*list(memory.gates["a"].history)[1:], new] and len(a) == HISTORY
    assert list(restored.gates["b"].history) == list(memory.gates["b"].history)
    store.close_sync()


def test_without_deferral_restore_is_whole_at_once(tmp_path: Path) -> None:
    rs = results("a", 7, NOW - 100, 10)
    filled(tmp_path / "s.db", rs).close_sync()
    store = open_store(str(tmp_path / "s.db"))
    restored = State()
    store.restore("t", restored)
    assert list(restored.gates["a"].history) == rs and store.histories_pending == 0
    store.close_sync()


def test_held_histories_wait_for_release(tmp_path: Path) -> None:
    # serve holds them until /-/ready: their thread would share the GIL with the rest of the start.
    rs = results("a", 7, NOW - 100, 10)
    filled(tmp_path / "s.db", rs).close_sync()
    store = open_store(str(tmp_path / "s.db"))
    store.defer_histories = store.histories_held = True
    restored = State()
    assert store.restore("t", restored) == 1
    assert list(restored.gates["a"].history) == [] and store.histories_pending == 0
    store.release_histories()
    wait_for(lambda: store.histories_pending == 0 and len(restored.gates["a"].history) == 7, timeout=10,
             what="histories restored after release")
    assert list(restored.gates["a"].history) == rs and not store.histories_held
    store.close_sync()
