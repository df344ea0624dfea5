"""The writer's compaction (packs.fold) on real state files: one gate whose pack cannot be built does not stop
the others', and folding the gates a span of gids at a time writes what folding them all at once writes."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from exporter.model import Result
from exporter.state import packs
from exporter.state.schema import connect, ensure_schema
from exporter.state.store import open_store
from tests.test_storage_store import NOW, filled, results


def gid_of(db: sqlite3.Connection, gate: str) -> int:
    return db.execute("SELECT gid FROM gates WHERE tracker = 't' AND gate = ?", (gate,)).fetchone()[0]


def test_a_pack_whose_sum_overflows_costs_only_that_gate_its_compaction(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.db"
    store = filled(path, results("a", 40, NOW - 3 * 86400, 3000) + results("b", 40, NOW - 3 * 86400, 3000))
    store.maintain(NOW)
    assert store.flush(30)
    store.close_sync()
    day = (int(NOW) // 86400 - 3) * 86400
    # 1,100 buckets of one day, each within restore's bound (packs.MAX_COUNT): restore takes them; coarsened
    # into that day's one bucket, the sum overflows 64 bits.
    starts = [day + 60 * i for i in range(1100)]
    big = packs.pack_columns((starts, [packs.MAX_COUNT] * 1100, [packs.MAX_COUNT] * 1100))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE bucket_packs SET data = ? WHERE gid = ?", (big, gid_of(db, "b")))
    store = open_store(str(path))
    store.merge_buckets("t", "b", {day: (1, 1)})
    store.record("t", Result("a", "pass", NOW + 10, 0.0, {}, ""))
    caplog.set_level(logging.WARNING, "qualitygate.storage")
    for later in (20, 320):  # two compactions: the gate is logged at the first only
        store.record("t", Result("a", "pass", NOW + later, 0.0, {}, ""))
        store.maintain(NOW + later + 5)
        assert store.flush(30) and store.is_up()
    store.close_sync()
    with sqlite3.connect(path) as db:
        a, b = gid_of(db, "a"), gid_of(db, "b")
        rows = dict(db.execute("SELECT gid, count(*) FROM buckets GROUP BY gid").fetchall())
        kept = db.execute("SELECT data FROM bucket_packs WHERE gid = ?", (b,)).fetchone()[0]
        a_pack = packs.unpack(db.execute("SELECT data FROM bucket_packs WHERE gid = ?", (a,)).fetchone()[0])
    assert a not in rows and int(NOW) // 300 * 300 in a_pack[0], "gate a's rows were folded into its pack"
    assert kept == big and rows[b] == 1, "gate b's pack and row are left as they are"
    warned = [r for r in caplog.records if "cannot be compacted" in r.getMessage()]
    assert len(warned) == 1 and "OverflowError" in str(warned[0].__dict__)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no write was rejected"


def sparse_file(path: Path) -> None:
    """Packs and rows of gids far apart (negative, one beyond a span, the largest SQLite integer), one gid a float."""
    db = connect(str(path))
    ensure_schema(db, str(path))
    gids = [-7, 1, 2, 3, 5, 300, 301, 40_000, 2**63 - 2, 2**63 - 1]
    now = int(NOW)
    db.executemany("INSERT INTO gates (gid, tracker, gate) VALUES (?, 't', ?)", ((g, f"g{g}") for g in gids))
    for n, g in enumerate(gids):
        if n % 3:
            old = [now - 40 * 86400, now - 5 * 86400 + 600, now - 3 * 3600 + 300 * (n % 5)]
            db.execute("INSERT INTO bucket_packs VALUES (?, ?)", (g, packs.pack_columns((old, [1, 2, 3], [2, 2, 4]))))
        if n % 4:
            db.executemany("INSERT INTO buckets VALUES (?, ?, ?, ?)", ((g, now - 300 * k, k, k + 1) for k in range(3)))
    db.execute("INSERT INTO buckets VALUES (1.5, ?, 1, 1)", (now,))  # not a gid of ours: left alone
    db.close()


def dump(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as db:
        return (db.execute("SELECT gid, data FROM bucket_packs ORDER BY gid").fetchall(),
                db.execute("SELECT * FROM buckets ORDER BY gid, start").fetchall())


@pytest.mark.parametrize("now", [None, NOW + 3600])
def test_folding_a_span_at_a_time_writes_what_one_span_writes(tmp_path: Path, monkeypatch, now: float | None) -> None:
    got = {}
    for span in (2**64, 2, 1):
        path = tmp_path / f"s{span}.db"
        sparse_file(path)
        monkeypatch.setattr(packs, "SPAN", span)
        db = connect(str(path))
        db.execute("BEGIN IMMEDIATE")
        packs.fold(db, now, {"t": 30 * 86400.0})
        db.execute("COMMIT")
        db.close()
        got[span] = dump(path)
    assert got[2] == got[1] == got[2**64]
    stored, rows = got[1]
    assert len(stored) == 9 and rows == [(1.5, int(NOW), 1, 1)], "every gate folded but the float gid"
