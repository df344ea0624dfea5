"""serve's early check (opening.Precheck) also reads the stored states ahead; Store.restore takes them only
while the file is as it was read. Real SQLite files, the real thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from exporter.model import Result
from exporter.state import restore as restoring
from exporter.state.memory import State
from exporter.state.opening import Precheck
from exporter.state.store import open_store
from tests.conftest import wait_for
from tests.test_storage_store import NOW, filled, results


def seeded(path: Path) -> State:
    rs = results("a", 80, NOW - 3 * 86400, 3000) + results("b", 5, NOW - 100, 10) + results("c", 3, NOW - 50, 10)
    memory = State()
    for r in rs:
        memory.record(r)
    store = filled(path, rs)
    store.record("other", Result("a", "fail", NOW - 10, 0.0, {}, ""))
    store.maintain(NOW)  # packs and rows both
    store.record("t", Result("b", "pass", NOW + 1, 0.0, {}, ""))
    memory.record(Result("b", "pass", NOW + 1, 0.0, {}, ""))
    assert store.flush(30)
    store.close_sync()
    memory.compact(10 * 365 * 86400.0, NOW)  # the file's compaction ran at NOW, before b's last result
    return memory


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The trackers Store.restore read from the file itself (not from the read-ahead, whose thread reads
    them all)."""
    said: list[str] = []
    real = restoring.gate_states

    def spy(db, tracker, *args, **kwargs):
        if threading.current_thread() is threading.main_thread():
            said.append(tracker)
        return real(db, tracker, *args, **kwargs)

    monkeypatch.setattr(restoring, "gate_states", spy)
    return said


def restored_at_start(store, tracker: str, wanted: list[str] | None = None) -> State:
    store._defer_histories = True  # not the setter: these tests end the start-up themselves
    state = State()
    store.restore(tracker, state, wanted)
    store._defer_histories = False
    wait_for(lambda: store.histories_pending == 0, timeout=10, what="histories restored")
    return state


def same(got: State, want: State, gates: list[str]) -> None:
    assert sorted(got.gates) == sorted(gates)
    for gid in gates:
        g, w = got.gates[gid], want.gates[gid]
        assert (g.result, g.counts, g.since, g.last_pass) == (w.result, w.counts, w.since, w.last_pass), gid
        assert g.buckets == w.buckets, gid
        assert list(g.history) == list(w.history), gid


def test_the_read_ahead_states_are_what_restore_reads(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "s.db"
    memory = seeded(path)
    early = Precheck(str(path))
    store = open_store(str(path), early=early)
    assert store._prefetched is not None, "the early check read the states ahead"
    same(restored_at_start(store, "t", ["a", "c"]), memory, ["a", "c"])  # only the gates asked for
    assert reads == [], "taken from the read-ahead, not read again"
    assert store._prefetched is not None
    store.defer_histories = False  # start-up is over
    assert store._prefetched is None
    assert restored_at_start(store, "other").gates["a"].result.outcome == "fail"  # read as before
    assert reads == ["other"]
    store.close_sync()


def test_a_file_written_after_the_read_ahead_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    path = tmp_path / "s.db"
    memory = seeded(path)
    early = Precheck(str(path))
    assert early.verified(str(path)) and early.stored is not None
    late = Result("a", "error", NOW + 5, 0.0, {}, "late")  # another process writes meanwhile
    writer = open_store(str(path))
    writer.record("t", late)
    assert writer.flush(30)
    writer.close_sync()
    memory.record(late)
    store = open_store(str(path), early=early)
    same(restored_at_start(store, "t"), memory, ["a", "b", "c"])
    assert reads == ["t"], "the file changed after the read-ahead: read again"
    store.close_sync()


def test_a_version_1_file_migrated_at_open_is_read_again(tmp_path: Path, reads: list[str]) -> None:
    import shutil

    from tests.test_state_migration import DATA, EXPECTED

    path = tmp_path / "s.db"
    shutil.copyfile(DATA / "state-v1.db", path)
    early = Precheck(str(path))
    store = open_store(str(path), early=early)  # migrates: rows become packs
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    state = restored_at_start(store, "t")
    assert reads == ["t"], "the migration changed the file after the read-ahead: read again"
    for gid, want in EXPECTED["trackers"]["t"].items():
        assert sorted([s, p, t] for s, (p, t) in state.gates[gid].buckets.items()) == want["buckets"], gid
    store.close_sync()
