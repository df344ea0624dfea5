"""Nothing acknowledged is lost: bad rows, the writer's bookkeeping, its guard, odd and foreign state files."""

from __future__ import annotations

import concurrent.futures
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from exporter.model import Result
from exporter.state import writer as writer_mod
from exporter.state.memory import HISTORY, State
from exporter.state.store import Attestation, ForeignFile, StorageError, open_store
from tests.conftest import ROOT, one_step_tracker, parse_metrics, sample, wait_for

NOW = 1_800_000_000.0


def results(gate: str, n: int, start: float = NOW - 1000) -> list[Result]:
    return [Result(gate, "pass" if i % 3 else "fail", start + i, 0.01, {"value": float(i)}, f"m{i}") for i in range(n)]


def aside_files(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and p.name[-4:] not in ("-wal", "-shm")]


# --- a bad row costs only itself -----------------------------------------------------------------


def test_lone_surrogate_fails_only_its_own_attestation(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(str(path))
    blocker = sqlite3.connect(path, timeout=30)
    blocker.execute("BEGIN EXCLUSIVE")  # hold the writer, so the bad row shares a batch with good ones
    good1 = store.attest("t", "m", Attestation(1.0, NOW, "alice", "first"))
    bad = store.attest("t", "m", Attestation(0.0, NOW + 1, "mallory", "\ud800"))
    good2 = store.attest("t", "m", Attestation(1.0, NOW + 2, "bob", "second"))
    for r in [*results("a", 20), Result("b", "pass", NOW, 0.0, {}, "bad \udc80 message"), *results("c", 5)]:
        store.record("t", r)
    blocker.rollback()
    blocker.close()
    assert store.flush(60)
    assert good1.result(0) is True and good2.result(0) is True
    with pytest.raises(StorageError, match="cannot store this attest"):
        bad.result(0)
    assert store.up and store.dropped == 2 and store.errors == 2
    assert store.writes == 2 + 20 + 5
    store.close_sync()
    again = open_store(str(path))
    assert [a.by for a in again.attestations("t", "m")] == ["bob", "alice"]
    state = State()
    again.restore("t", state)
    assert set(state.gates) == {"a", "c", "m"}  # b's only evaluation could not be stored
    assert len(state.gates["a"].history) == 20 and len(state.gates["c"].history) == 5
    again.close_sync()


def test_a_value_sqlite_refuses_fails_only_its_row(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    fine = store.attest("t", "m", Attestation(1.0, NOW, "alice", "ok"))
    huge = store.attest("t", "m", Attestation(1.0, NOW, "x", "ok"))
    object.__setattr__(huge_att := Attestation(1.0, NOW, "y", "ok"), "at", 10**30)  # no REAL, no INTEGER
    huger = store.attest("t", "m", huge_att)
    assert store.flush(30)
    assert fine.result(0) and huge.result(0)
    with pytest.raises(StorageError, match="OverflowError"):
        huger.result(0)
    store.close_sync()


# --- flush() and the writer's bookkeeping --------------------------------------------------------


class SlowFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A future whose resolution takes a while, as a busy thread's would."""

    def set_result(self, result: object) -> None:
        time.sleep(0.3)
        super().set_result(result)


def test_flush_reports_done_only_after_the_futures_are_answered(tmp_path: Path, monkeypatch) -> None:
    store = open_store(str(tmp_path / "s.db"))
    monkeypatch.setattr(concurrent.futures, "Future", SlowFuture)
    for i in range(3):
        done = store.attest("t", "m", Attestation(1.0, NOW + i, "alice", "ok"))
        assert store.flush(30)
        assert done.done() and done.result() is True, "flush() said idle before the attestation was answered"
    store.close_sync()


def test_writer_crash_is_logged_counted_and_the_writer_restarts(tmp_path: Path, monkeypatch, caplog) -> None:
    calls = {"n": 0}
    original = writer_mod.Writer.refresh_attestations

    def buggy(self: writer_mod.Writer) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("a bug in the writer")
        original(self)

    monkeypatch.setattr(writer_mod.Writer, "refresh_attestations", buggy)
    monkeypatch.setattr(writer_mod, "RETRY_MIN", 0.05)
    store = open_store(str(tmp_path / "s.db"))
    with caplog.at_level(logging.ERROR, logger="qualitygate.storage"):
        first = store.attest("t", "m", Attestation(1.0, NOW, "alice", "before"))
        wait_for(lambda: store.errors >= 1, timeout=20, what="the writer to crash")
        assert first.result(5) is True  # committed before the crash: answered, not lost
        later = store.attest("t", "m", Attestation(1.0, NOW + 1, "bob", "after"))
        assert later.result(20) is True
    crash = [r for r in caplog.records if "restarting" in r.getMessage()]
    assert crash and crash[0].exc_info is not None and "a bug in the writer" in str(crash[0].exc_info[1])
    wait_for(lambda: store.up, timeout=20, what="the writer to recover")
    assert store._thread is not None and store._thread.is_alive()
    store.close_sync()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT count(*) FROM attestations").fetchone()[0] == 2


def test_a_dead_writer_thread_reports_storage_down(tmp_path: Path, monkeypatch) -> None:
    class Killed(BaseException):
        """Beyond the guard, as an interpreter shutting the thread down would be."""

    def dies(self: writer_mod.Writer) -> None:
        raise Killed

    monkeypatch.setattr(writer_mod.Writer, "loop", dies)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    store = open_store(str(tmp_path / "s.db"))
    assert store._thread is not None
    store._thread.join(10)
    registry = CollectorRegistry()
    registry.register(store)
    assert registry.get_sample_value("qualitygate_storage_up") == 0.0
    store.record("t", Result("a", "pass", NOW, 0.0))
    assert not store.flush(1)  # nothing writes: flush says so instead of waiting or claiming done
    store.close_sync()


def test_collector_yields_every_storage_family(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    for r in results("a", 7):
        store.record("t", r)
    assert store.flush(30)
    registry = CollectorRegistry()
    registry.register(store)
    assert registry.get_sample_value("qualitygate_storage_up") == 1.0
    assert registry.get_sample_value("qualitygate_storage_writes_total") == 7.0
    assert registry.get_sample_value("qualitygate_storage_errors_total") == 0.0
    assert registry.get_sample_value("qualitygate_storage_dropped_total") == 0.0
    assert registry.get_sample_value("qualitygate_storage_queue_length") == 0.0
    store.close_sync()


# --- odd state files -----------------------------------------------------------------------------


def written(path: Path, rs: list[Result]) -> None:
    store = open_store(str(path))
    for r in rs:
        store.record("t", r)
    store.attest("t", "m", Attestation(1.0, NOW, "alice", "ok"))
    assert store.flush(30)
    store.close_sync()


def test_schema_version_that_is_no_number_is_moved_aside(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 5))
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    before = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="qualitygate.storage"):
        store = open_store(str(path))
    assert [p.read_bytes() for p in aside_files(tmp_path)] == [before]
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert store.restore("t", State()) == 0
    store.record("t", Result("a", "pass", NOW, 0.0))
    assert store.flush(30) and store.up
    store.close_sync()


def test_read_only_open_of_a_bad_marker_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 2))
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = '1; DROP' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="corrupt: schema version"):
        open_store(str(path), read_only=True)


@pytest.mark.parametrize(("what", "sql"), [
    ("bad JSON", "UPDATE history SET measurements = '{\"value\": 1' WHERE seq = 3"),
    ("JSON not an object", "UPDATE history SET measurements = '[1, 2]' WHERE seq = 3"),
    ("a text measurement", "UPDATE history SET measurements = '{\"value\": \"x\"}' WHERE seq = 3"),
    ("a comma-joined fragment", "UPDATE history SET measurements = '{}],[{' WHERE seq = 3"),
    ("an unknown outcome", "UPDATE history SET outcome = 'banana' WHERE seq = 3"),
    ("a text start time", "UPDATE history SET started = 'yesterday' WHERE seq = 3"),
    ("a blob message", "UPDATE history SET message = x'00ff' WHERE seq = 3"),
    ("a huge integer", "UPDATE history SET duration = 1e400 WHERE seq = 3"),
])
def test_one_bad_history_row_is_left_out_and_the_rest_restores(tmp_path: Path, caplog, what: str, sql: str) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 10) + results("b", 4))
    with sqlite3.connect(path) as c:
        c.execute(sql + " AND gid = (SELECT gid FROM gates WHERE gate = 'a')")
    with caplog.at_level(logging.WARNING, logger="qualitygate.storage"):
        store = open_store(str(path))
        state = State()
        assert store.restore("t", state) == 3  # a, b and the manual gate m
    got = [r.started for r in state.gates["a"].history]
    if what == "a huge integer":  # 1e400 is stored as Inf, a number: kept as SQLite holds it
        assert len(got) == 10
    else:
        assert len(got) == 9 and NOW - 1000 + 2 not in got, what
        assert any("left it out" in r.getMessage() for r in caplog.records)
    assert len(state.gates["b"].history) == 4
    store.close_sync()


@pytest.mark.parametrize("sql", [
    "UPDATE gates SET outcome = 'banana' WHERE gate = 'a'",
    "UPDATE gates SET measurements = 'nope' WHERE gate = 'a'",
    "UPDATE gates SET n_pass = 'many' WHERE gate = 'a'",
    "UPDATE gates SET started = NULL WHERE gate = 'a'",
    "UPDATE gates SET gate = x'ff' WHERE gate = 'a'",
])
def test_one_bad_gate_row_leaves_that_gate_empty(tmp_path: Path, sql: str) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 10) + results("b", 4))
    with sqlite3.connect(path) as c:
        c.execute(sql)
    store = open_store(str(path))
    state = State()
    store.restore("t", state)
    assert set(state.gates) == {"b", "m"} and len(state.gates["b"].history) == 4
    store.close_sync()


def test_bad_uptime_counts_and_attestations_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 10) + results("b", 4))
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO buckets SELECT gid, 'x', 1, 1 FROM gates WHERE gate = 'a'")
        c.execute("INSERT INTO buckets SELECT gid, 7, 5, 2 FROM gates WHERE gate = 'b'")  # more passed than run
        c.execute("INSERT INTO attestations (gid, at, value, note, by) SELECT gid, 1, 'yes', '', 'eve' FROM gates "
                  "WHERE gate = 'm'")
    store = open_store(str(path))
    state = State()
    assert store.restore("t", state) == 3
    assert state.gates["a"].buckets == {} and state.gates["b"].buckets == {}
    assert len(state.gates["a"].history) == 10
    assert [a.by for a in store.attestations("t", "m")] == ["alice"]
    store.close_sync()


def foreign(path: Path) -> bytes:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO users (name) VALUES ('precious')")
    return path.read_bytes()


def test_foreign_sqlite_file_is_refused_not_extended(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    before = foreign(path)
    with pytest.raises(ForeignFile, match=r"not a qualitygate state file .*users"):
        open_store(str(path))
    with pytest.raises(StorageError, match="not a qualitygate state file"):
        open_store(str(path), read_only=True)
    assert path.read_bytes() == before
    tables = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert tables == ["users"]
    assert not aside_files(tmp_path)


def test_a_file_with_only_some_of_our_tables_is_ours(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with sqlite3.connect(path) as c:  # as a version that created tables before its marker could leave it
        c.execute("CREATE TABLE gates (gid INTEGER PRIMARY KEY, tracker TEXT NOT NULL, gate TEXT NOT NULL, "
                  "outcome TEXT, started REAL, duration REAL, measurements TEXT, message TEXT, last_pass REAL, "
                  "since REAL, n_pass INTEGER NOT NULL DEFAULT 0, n_fail INTEGER NOT NULL DEFAULT 0, n_error "
                  "INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL DEFAULT 0, unseen_since REAL, "
                  "UNIQUE (tracker, gate))")
    store = open_store(str(path))
    store.record("t", Result("a", "pass", NOW, 0.0))
    assert store.flush(30) and store.up
    store.close_sync()


# --- through a real serve ------------------------------------------------------------------------


def config(write_config) -> Path:
    return write_config(one_step_tracker("""
- {id: a, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}
- {id: b, interval: 1s, timeout: 1s, file: {path: /etc/hostname}}
""", tracker="t"))


def test_serve_refuses_a_foreign_state_file_with_one_line(tmp_path: Path, write_config) -> None:
    path = tmp_path / "app.db"
    before = foreign(path)
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--web.listen-address", "127.0.0.1:0",
                           "--config.file", str(config(write_config)), "--storage.path", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a qualitygate state file" in lines[0] and "Traceback" not in proc.stderr
    assert path.read_bytes() == before


def test_serve_moves_aside_a_bad_marker_and_skips_bad_rows(tmp_path: Path, write_config, serve) -> None:
    cfg = config(write_config)
    marked, rows = tmp_path / "marked.db", tmp_path / "rows.db"
    written(marked, results("a", 5))
    with sqlite3.connect(marked) as c:
        c.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    s = serve(cfg, "--storage.path", str(marked))
    assert any(line for line in s.log().splitlines() if "corrupt" in line and "moved_to=" in line)
    assert len(aside_files(tmp_path)) == 1
    wait_for(lambda: sample(parse_metrics(s.get("/metrics")[1]), "qualitygate_storage_writes_total") > 0,
             timeout=30, what="writes to the fresh file")
    s.stop()

    written(rows, results("a", HISTORY) + results("b", 3))
    with sqlite3.connect(rows) as c:
        c.execute("UPDATE history SET measurements = '{bad json' WHERE seq = 7")
        c.execute("UPDATE gates SET outcome = 'banana' WHERE gate = 'b'")
    s = serve(cfg, "--storage.path", str(rows))
    log = s.log()
    assert "Traceback" not in log and "left it out" in log
    status, body = s.get("/api/gates/a")
    assert status == 200, body
    m = parse_metrics(s.get("/metrics")[1])
    assert sample(m, "qualitygate_storage_up") == 1.0
    restored = sum(v for (name, labels), v in m.items()
                   if name in ("gate_evaluations_total", "gate_evaluations") and ("gate", "a") in labels)
    assert restored >= HISTORY  # the first life's counts came back
