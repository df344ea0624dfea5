"""The state file's schema migration (version 1 -> 2: uptime buckets packed per gate), on a real version-1 file.

tests/testdata/state/state-v1.db was written by the version-1 code (tests/testdata/state/make_v1.py, run
from commit 400420d); state-v1.json holds what that code restored from it. After the migration every
bucket, ratio and counter must be the same, and stay the same across restarts and compactions.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from exporter.model import Result
from exporter.state import packs
from exporter.state.memory import State
from exporter.state.schema import SCHEMA_VERSION
from exporter.state.store import Attestation, StorageError, open_store

DATA = Path(__file__).parent / "testdata" / "state"
EXPECTED = json.loads((DATA / "state-v1.json").read_text())
NOW = EXPECTED["now"]


def expected(tracker: str) -> dict[str, dict[str, object]]:
    """state-v1.json's record, but for one fix: version 1's pass_ratio summed gate x's hand-made row (its
    start is text), which restore refuses; now that row costs x its ratio too (0 of 0), never a pass."""
    gates = json.loads(json.dumps(EXPECTED["trackers"][tracker]))
    if "x" in gates:
        gates["x"]["ratios"] = [[0, 0] for _ in gates["x"]["ratios"]]
    return gates


def restores_as_recorded(store) -> None:
    """Every tracker of the v1 fixture restores as state-v1.json records it (but for gate x's ratio)."""
    for tracker in EXPECTED["trackers"]:
        assert restored(store, tracker) == expected(tracker), tracker


def v1_file(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    shutil.copyfile(DATA / "state-v1.db", path)
    return path


def version(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]


def restored(store, tracker: str) -> dict[str, dict[str, object]]:
    """What state-v1.json records, as this code restores it."""
    state = State()
    store.restore(tracker, state)
    return {gid: {"buckets": sorted([s, p, t] for s, (p, t) in st.buckets.items()),
                  "ratios": [list(store.pass_ratio(tracker, gid, w, NOW)) for w in EXPECTED["windows"]],
                  "counts": st.counts, "history": len(st.history)}
            for gid, st in sorted(state.gates.items())}


def test_the_fixture_is_a_version_1_file() -> None:
    assert version(DATA / "state-v1.db") == "1"
    assert SCHEMA_VERSION == 2


def test_a_version_1_file_is_migrated_with_every_bucket_and_ratio_kept(tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    store = open_store(str(path))
    assert version(path) == "2"
    restores_as_recorded(store)
    assert store.attestations("t", "m")[0] == Attestation(1.0, NOW - 50, "alice", "checked")
    store.close_sync()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        packed = db.execute("SELECT g.tracker, g.gate FROM bucket_packs p JOIN gates g USING (gid) "
                            "ORDER BY 1, 2").fetchall()
        rows = db.execute("SELECT g.gate, b.start FROM buckets b JOIN gates g USING (gid) ORDER BY 2").fetchall()
    assert packed == [("t", "a"), ("t", "b"), ("t", "c"), ("u", "a")]
    # A gate with a row that is not ours stays as it was (restore says so).
    assert rows == [("x", int(NOW - 100) // 300 * 300), ("x", "x")]
    # A restart restores the same from the migrated file, and finds nothing more to migrate.
    store = open_store(str(path))
    restores_as_recorded(store)
    store.close_sync()
    assert version(path) == "2"


def test_after_migration_the_writer_adds_and_compacts_as_memory_does(tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    store = open_store(str(path))
    memory = State()
    store.restore("t", memory)
    later = [Result("a", "pass" if i % 2 else "fail", NOW + 60 + i * 60, 0.0, {}, "") for i in range(30)]
    for r in later:
        store.record("t", r)
        memory.record(r)
    store.merge_buckets("t", "b", {int(NOW) // 300 * 300: (5, 7)})
    memory.gates["b"].buckets.add(int(NOW) // 300 * 300, 5, 7)
    assert store.flush(30)
    for gid in ("a", "b"):  # packs plus the rows written since
        for w in EXPECTED["windows"]:
            assert store.pass_ratio("t", gid, w, NOW + 2000) == memory.pass_ratio(gid, w, NOW + 2000), (gid, w)
    then = NOW + 3 * 86400
    store.maintain(then)
    assert store.flush(30)
    memory.compact(40 * 86400, then)  # no config: the writer keeps every bucket too, only coarsens
    again = State()
    store.restore("t", again)
    for gid in ("a", "b", "c"):
        assert again.gates[gid].buckets == memory.gates[gid].buckets, gid
    store.close_sync()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM buckets b JOIN gates g USING (gid) WHERE g.gate != 'x'"
                          ).fetchone()[0] == 0, "the compaction folded the rows into the packs"


def test_a_failed_migration_leaves_the_version_1_file_as_it_was(tmp_path: Path, monkeypatch) -> None:
    path = v1_file(tmp_path)
    before = sqlite3.connect(path).execute("SELECT * FROM buckets ORDER BY gid, start").fetchall()

    def half_then_fail(db: sqlite3.Connection) -> None:
        db.execute(packs.TABLE)
        packs.fold(db, None, {})  # rows packed and deleted, then the disk fills
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setitem(__import__("exporter.state.schema", fromlist=["MIGRATIONS"]).MIGRATIONS, 1, half_then_fail)
    store = open_store(str(path))
    assert not store.is_up()
    store.close_sync()
    assert version(path) == "1"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT * FROM buckets ORDER BY gid, start").fetchall() == before
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'bucket_packs'").fetchone() == (0,)


def test_a_version_1_file_opened_read_only_is_read_as_it_is(tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    store = open_store(str(path), read_only=True)
    restores_as_recorded(store)
    store.close_sync()
    assert version(path) == "1"


def test_a_file_of_a_newer_version_is_still_refused(tmp_path: Path) -> None:
    path = v1_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    before = path.read_bytes()
    store = open_store(str(path))
    assert not store.is_up()
    state = State()
    assert store.restore("t", state) == 0
    store.close_sync()
    assert path.read_bytes() == before
    with pytest.raises(StorageError, match="schema version 3"):
        open_store(str(path), read_only=True)


@pytest.mark.parametrize("seed", range(40))
def test_the_packs_coarsen_exactly_as_memory_does(seed: int) -> None:
    import random

    from exporter.state.memory import GateState

    rng = random.Random(seed)
    now = NOW + rng.randrange(86400)
    spans = (7200, 3 * 86400, 40 * 86400)  # 5-minute, hourly and daily ages
    times = [int(now - rng.randrange(rng.choice(spans))) for _ in range(rng.randrange(1, 300))]
    starts = {t - t % rng.choice([1, 300, 300, 3600, 86400]) for t in times}  # mostly as the writer aligns them
    st = GateState(buckets={s: [(n := rng.randrange(50)), n + rng.randrange(5)] for s in starts})
    keep = rng.choice([None, 3 * 86400.0, 20 * 86400.0])
    cols = packs.unpack(packs.pack(st.buckets))
    got = packs.coarsen(cols, now, keep)
    st.compact(now, float("inf") if keep is None else keep)
    assert list(got[0]) == sorted(st.buckets)
    assert {s: [p, t] for s, p, t in zip(*got, strict=True)} == st.buckets


@pytest.mark.parametrize("bad", [b"\x00" * 23, "text", 5,  # not three runs of 64-bit integers
                                 packs.pack_columns(([100, 100], [1, 1], [1, 1])),  # one bucket twice
                                 packs.pack_columns(([100, 200], [3, 1], [2, 1])),  # more passed than run
                                 packs.pack_columns(([100, 200], [-1, 1], [2, 1])),  # fewer than none
                                 packs.pack_columns(([200, 100], [1, 5], [1, 5]))])  # out of order
def test_a_pack_that_is_not_ours_costs_that_gate_its_uptime_counts_only(tmp_path: Path, bad: object, caplog) -> None:
    path = v1_file(tmp_path)
    open_store(str(path)).close_sync()  # migrated
    with sqlite3.connect(path) as db:
        db.execute("UPDATE bucket_packs SET data = ? WHERE gid = (SELECT gid FROM gates WHERE tracker = 't' "
                   "AND gate = 'b')", (bad,))
    store = open_store(str(path))
    got = restored(store, "t")
    assert got["b"]["buckets"] == [] and got["b"]["counts"] == EXPECTED["trackers"]["t"]["b"]["counts"]
    assert got["a"] == EXPECTED["trackers"]["t"]["a"], "the other gates restore as usual"
    assert "uptime counts cannot be read" in caplog.text
    store.record("t", Result("b", "pass", NOW + 1, 0.0, {}, ""))
    store.maintain(NOW + 600)  # the compaction leaves that gate's pack and rows alone, and does the rest
    assert store.flush(30) and store.is_up()
    store.close_sync()
    with sqlite3.connect(path) as db:
        kept = db.execute("SELECT data FROM bucket_packs WHERE gid = (SELECT gid FROM gates WHERE tracker = 't' "
                          "AND gate = 'b')").fetchone()[0]
        rows = db.execute("SELECT count(*) FROM buckets b JOIN gates g USING (gid) WHERE g.gate = 'b'").fetchone()[0]
    assert kept == bad and rows == 1


@pytest.mark.parametrize("row", [(50, 1), (-1, 1), (1, 2**62), ("one", 2), (1.5, 2)])
def test_a_bucket_row_that_restore_refuses_gives_no_ratio_either(tmp_path: Path, row: tuple[object, object]) -> None:
    """check and report read a ratio from the file (pass_ratio): a hand-edited row must not make it
    pass (50 of 1 is 5000 %); it costs that gate its ratio, as restore drops its counts."""
    path = v1_file(tmp_path)
    open_store(str(path)).close_sync()  # migrated
    with sqlite3.connect(path) as db:
        gid = db.execute("SELECT gid FROM gates WHERE tracker = 't' AND gate = 'b'").fetchone()[0]
        db.execute("INSERT INTO buckets VALUES (?, ?, ?, ?)", (gid, int(NOW) - 600, *row))
    store = open_store(str(path), read_only=True)
    window = max(EXPECTED["windows"])
    assert store.pass_ratio("t", "b", window, NOW) == (0, 0)
    state = State()
    store.restore("t", state)
    assert state.gates["b"].buckets == {}
    assert list(store.pass_ratio("t", "a", window, NOW)) == \
        EXPECTED["trackers"]["t"]["a"]["ratios"][EXPECTED["windows"].index(window)], "the other gates as before"
    store.close_sync()
