"""Pushed evidence in the state file: round trip, restore of what decides a gate, retention, kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporter.config.model import parse_config
from exporter.state.evidence import MAX_BODY_STORED, PUSHES_KEPT, Push
from exporter.state.store import GRACE, StorageError, open_store
from tests.conftest import ROOT, one_step_tracker

NOW = 1_800_000_000.0


def push(n: int, *, counts: bool = True, run_id: str = "", body: bytes | None = None, value: float = 0.9) -> Push:
    report = body if body is not None else f"<coverage line-rate='{value}' n='{n}'/>".encode()
    return Push.of(report, measurements={"value": value, "lines": 100.0 + n}, counts=counts, commit=f"c{n:04d}",
                   branch="main" if counts else "feature", run_url=f"https://ci.example/run/{n}", run_id=run_id,
                   received_at=NOW + n)


def add(store, tracker: str, gate: str, *pushes: Push) -> None:
    async def run() -> None:
        for p in pushes:
            await store.add_push(tracker, gate, p)
    asyncio.run(run())


def test_a_push_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    big = b"x" * (MAX_BODY_STORED + 1)
    add(store, "t", "cov", push(1))
    add(store, "t", "big", push(2, body=big))
    assert store.evidence("t", "cov") == (push(1),)  # visible once add_push returned
    store.close_sync()

    again = open_store(str(path))
    (got,) = again.evidence("t", "cov")
    want = push(1)
    assert got == want and got.body == want.body and got.body is not None
    assert got.measurements == {"value": 0.9, "lines": 101.0} and got.commit == "c0001"
    assert got.sha256 == want.sha256 and len(got.sha256) == 64 and got.size == want.size
    (large,) = again.evidence("t", "big")
    assert large.size == len(big) and large.body is None  # digest and size kept, the body not
    again.close_sync()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*), sum(body IS NULL) FROM pushes").fetchone() == (2, 1)


def test_restore_keeps_the_latest_counting_push_and_its_run(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    add(store, "t", "cov", push(1), push(2), push(3, counts=False))  # a pull request's push decides nothing
    add(store, "t", "tests", push(10, run_id="r1"), push(11, run_id="r2"), push(12, run_id="r2"),
        push(13, run_id="r2", counts=False), push(14, run_id="r2"))
    live = store.evidence("t", "tests")
    store.close_sync()
    again = open_store(str(path))
    assert [p.commit for p in again.evidence("t", "cov")] == ["c0002"]
    assert [p.commit for p in again.evidence("t", "tests")] == ["c0014", "c0012", "c0011"]
    assert again.evidence("t", "tests") == live
    assert again.evidence("t", "nothing") == ()
    again.close_sync()


def test_retention_keeps_the_newest_and_always_what_decides(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    store.configured([parse_config(one_step_tracker("- {id: cov, manual: {max_age: 1d}}"))], now=NOW)
    prs = [push(100 + i, counts=False) for i in range(PUSHES_KEPT + 30)]
    add(store, "t", "cov", push(1, run_id="main-run"), push(2, run_id="main-run"), *prs)
    store.maintain(NOW)
    assert store.flush(30)
    store.close_sync()
    with sqlite3.connect(path) as c:
        kept = {r[0] for r in c.execute("SELECT commit_sha FROM pushes")}
    assert len(kept) == PUSHES_KEPT + 2
    assert {"c0001", "c0002"} <= kept  # older than 100 pull-request pushes, but they decide the gate
    again = open_store(str(path))
    assert [p.commit for p in again.evidence("t", "cov")] == ["c0002", "c0001"]
    again.close_sync()


def test_pushes_go_with_their_gate_after_the_grace_period(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    both = parse_config(one_step_tracker("- {id: cov, manual: {max_age: 1d}}\n- {id: other, manual: {max_age: 1d}}"))
    only = parse_config(one_step_tracker("- {id: other, manual: {max_age: 1d}}"))
    store.configured([both], now=NOW)
    add(store, "t", "cov", push(1))
    add(store, "t", "other", push(2))
    store.configured([only], now=NOW)
    store.maintain(NOW + GRACE / 2)
    assert store.flush(30)
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM pushes").fetchone()[0] == 2  # within grace: kept
    store.maintain(NOW + GRACE + 1)
    assert store.flush(30)
    store.close_sync()
    again = open_store(str(path))
    assert again.evidence("t", "cov") == () and len(again.evidence("t", "other")) == 1
    again.close_sync()


def test_a_push_sqlite_cannot_take_fails_alone(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    bad = Push.of(b"r", measurements={"value": float("nan")}, counts=True, commit="\ud800", received_at=NOW)
    with pytest.raises(StorageError, match="cannot store this push"):
        add(store, "t", "cov", bad)
    add(store, "t", "cov", push(1))
    assert [p.commit for p in store.evidence("t", "cov")] == ["c0001"]
    store.close_sync()


def test_read_only_store_refuses_a_push(tmp_path: Path) -> None:
    open_store(str(tmp_path / "s.db")).close_sync()
    store = open_store(str(tmp_path / "s.db"), read_only=True)
    with pytest.raises(StorageError, match="read-only"):
        add(store, "t", "cov", push(1))
    store.close_sync()


def test_bad_push_rows_are_left_out_at_restore(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    add(store, "t", "cov", push(1))
    add(store, "t", "junk", push(2))
    store.close_sync()
    with sqlite3.connect(path) as c:
        c.execute("UPDATE pushes SET measurements = '{nope' WHERE commit_sha = 'c0002'")
    again = open_store(str(path))
    assert len(again.evidence("t", "cov")) == 1 and again.evidence("t", "junk") == ()
    again.close_sync()


WRITER = textwrap.dedent("""
    import asyncio, sys
    from exporter.state.evidence import Push
    from exporter.state.store import open_store

    async def main() -> None:
        store = open_store(sys.argv[1])
        n = 0
        while True:  # until SIGKILL
            pending = [store.add_push("t", f"g{(n + k) % 7}", Push.of(b"<r/>" * (n + k), measurements={"value": 1.0},
                                       counts=True, commit=f"c{n + k}", run_id=f"r{(n + k) // 3}")) for k in range(4)]
            for k, coro in enumerate(pending):
                await coro
                print(f"c{n + k}", flush=True)  # add_push returned: the push is acknowledged
            n += 4

    asyncio.run(main())
""")


def test_every_acknowledged_push_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    acknowledged: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= 300:
                break
        proc.send_signal(signal.SIGKILL)
        acknowledged += [line.strip() for line in proc.stdout]  # lines already written before the kill
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 300
    with sqlite3.connect(path) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in c.execute("SELECT commit_sha FROM pushes")}
    missing = [a for a in acknowledged if a not in stored]
    assert not missing, f"{len(missing)} acknowledged pushes lost, e.g. {missing[:5]}"
    store = open_store(str(path))
    assert all(store.evidence("t", f"g{i}") for i in range(7))
    store.close_sync()
