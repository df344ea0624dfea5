"""The SQLite store on its own, against real files: write path, restore, compaction, grace, faults."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.config.model import parse_config
from exporter.model import Result
from exporter.state.memory import HISTORY, State
from exporter.state.store import GRACE, Attestation, StorageError, open_store, retention
from tests.conftest import one_step_tracker, wait_for

NOW = 1_800_000_000.0  # a fixed "now" so bucket boundaries are the same on every run

CONFIG = one_step_tracker("""
- {id: a, file: {path: /etc/hostname}}
- {id: b, file: {path: /etc/hostname}}
- {id: m, manual: {max_age: 1d}}
- {id: u, uptime: {gate: a, window: 20d}, expect: ">= 50%"}
""", uptime_window="7d")


def results(gate: str, n: int, start: float, step: float, every_fail: int = 4) -> list[Result]:
    """n evaluations, one every `step` seconds; every `every_fail`-th fails, some err."""
    out = []
    for i in range(n):
        outcome = "fail" if i % every_fail == 0 else ("error" if i % 7 == 0 else "pass")
        out.append(Result(gate, outcome, start + i * step, 0.001 * i, {"value": float(i), "size": 2.0}, f"m{i}"))
    return out


def without_a():
    """CONFIG after a reload that lost gate a."""
    lines = [line for line in CONFIG.splitlines() if "{id: a," not in line]
    return parse_config("\n".join(lines).replace("gate: a", "gate: b"))


def filled(path: Path, rs: list[Result], tracker: str = "t"):
    store = open_store(str(path))
    for r in rs:
        store.record(tracker, r)
    assert store.flush(30)
    return store


def test_restore_gives_back_exactly_the_recorded_state(tmp_path: Path) -> None:
    rs = results("a", 180, NOW - 3 * 3600, 60) + results("b", 5, NOW - 100, 10)
    memory = State()
    for r in rs:
        memory.record(r)
    store = filled(tmp_path / "s.db", rs)
    store.close_sync()

    store = open_store(str(tmp_path / "s.db"))
    restored = State()
    assert store.restore("t", restored) == 2
    for gid in ("a", "b"):
        want, got = memory.gates[gid], restored.gates[gid]
        assert got.result == want.result
        assert got.last_pass == want.last_pass and got.since == want.since
        assert got.counts == want.counts
        assert list(got.history) == list(want.history)
        assert got.uptime(86400, NOW) == want.uptime(86400, NOW)
    assert len(restored.gates["a"].history) == HISTORY
    assert restored.gates["a"].history[-1].started == rs[179].started
    store.close_sync()


def test_history_rows_stay_bounded(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db", results("a", 3 * HISTORY + 7, NOW - 1000, 1))
    store.close_sync()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT count(*) FROM history").fetchone()[0] == HISTORY
    assert db.execute("SELECT n_pass + n_fail + n_error FROM gates").fetchone()[0] == 3 * HISTORY + 7


def test_compaction_on_disk_matches_memory(tmp_path: Path) -> None:
    # Ten days of a gate every 10 minutes: 5-minute, hourly and daily buckets all occur.
    rs = results("a", 6 * 24 * 10, NOW - 10 * 86400, 600, every_fail=3)
    memory = State()
    for r in rs:
        memory.record(r)
    store = filled(tmp_path / "s.db", rs)
    store.configured([parse_config(CONFIG)])
    store.maintain(NOW)
    assert store.flush(30)
    memory.compact(keep=retention(parse_config(CONFIG)), now=NOW)
    restored = State()
    store.restore("t", restored)
    assert restored.gates["a"].buckets == memory.gates["a"].buckets
    starts = sorted(restored.gates["a"].buckets)
    assert all(s % 86400 == 0 for s in starts if s < NOW - 2 * 86400 - 3600)
    assert all(s % 3600 == 0 for s in starts if s < NOW - 7200 - 300)
    assert len(starts) < 24 + 48 + 11  # coarse, not one row per evaluation
    for window in (3600, 86400, 5 * 86400, 30 * 86400):
        assert store.pass_ratio("t", "a", window, NOW) == memory.pass_ratio("a", window, NOW)
    store.close_sync()


def test_old_buckets_are_pruned_beyond_the_longest_window(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    keep = retention(config)
    assert keep == 20 * 86400 + 2 * 86400  # the uptime gate's 20d beats uptime_window 7d
    store = filled(tmp_path / "s.db", [Result("a", "pass", NOW - keep - 86400 * 3, 0.0),
                                       Result("a", "pass", NOW - keep + 86400 * 2, 0.0)])
    store.configured([config])
    store.maintain(NOW)
    assert store.flush(30)
    assert store.pass_ratio("t", "a", 10 * keep, NOW) == (1, 1)
    store.close_sync()


def test_unconfigured_gates_survive_the_grace_period_then_go(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    only_b = without_a()
    store = filled(tmp_path / "s.db", results("a", 10, NOW - 100, 1) + results("b", 10, NOW - 100, 1))
    store.configured([config], now=NOW)
    store.configured([only_b], now=NOW)  # a reload with a typo drops gate a
    store.maintain(NOW + GRACE - 60)
    assert store.flush(30)
    state = State()
    store.restore("t", state)
    assert set(state.gates) == {"a", "b"}, "a gate must outlive a bad reload"
    store.configured([only_b], now=NOW + 10)  # still missing: the first time it went missing counts
    store.maintain(NOW + GRACE + 60)
    assert store.flush(30)
    state = State()
    store.restore("t", state)
    assert set(state.gates) == {"b"}
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("SELECT count(*) FROM buckets b JOIN gates g USING (gid) WHERE g.gate = 'a'").fetchone()[0] == 0
    store.close_sync()


def test_a_gate_configured_again_within_grace_keeps_its_rows(tmp_path: Path) -> None:
    config = parse_config(CONFIG)
    only_b = without_a()
    store = filled(tmp_path / "s.db", results("a", 10, NOW - 100, 1))
    store.configured([only_b], now=NOW)
    store.configured([config], now=NOW + 3600)
    store.maintain(NOW + GRACE * 2)
    assert store.flush(30)
    state = State()
    store.restore("t", state)
    assert state.gates["a"].counts["pass"] + state.gates["a"].counts["fail"] + state.gates["a"].counts["error"] == 10
    store.close_sync()


def test_attestations_are_kept_and_read_back(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    old = Attestation(0.5, NOW - 10, "alice", "first")
    new = Attestation(1.0, NOW, "bob", "second")
    assert store.attest("t", "m", old).result(10) is True
    assert store.attest("t", "m", new).result(10) is True
    assert store.history("t", None).latest_attestation("m") == new
    store.close_sync()
    store = open_store(str(tmp_path / "s.db"), read_only=True)
    assert store.attestations("t", "m") == (new, old)
    assert store.history("t", None).latest_attestation("other") is None
    store.close_sync()


def test_attestation_written_by_another_process_is_picked_up(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    running = open_store(path)
    running.configured([parse_config(CONFIG)])
    other = open_store(path, move_corrupt_aside=False)
    att = Attestation(1.0, NOW, "carol", "")
    assert other.attest("t", "m", att).result(10)
    other.close_sync()
    wait_for(lambda: running.attestations("t", "m") == (att,), timeout=20, what="attestation from the other writer")
    running.close_sync()


def test_corrupt_file_at_start_is_moved_aside_not_overwritten(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.db"
    garbage = b"this is not an SQLite database, it is someone's data" * 100
    path.write_bytes(garbage)
    (tmp_path / "s.db-wal").write_bytes(b"stale wal")
    with caplog.at_level("ERROR", logger="qualitygate.storage"):
        store = open_store(str(path))
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1
    assert aside[0].read_bytes() == garbage
    assert (tmp_path / (aside[0].name + "-wal")).read_bytes() == b"stale wal"
    assert any("corrupt" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    store.record("t", Result("a", "pass", NOW, 0.0))
    assert store.flush(30) and store.up
    store.close_sync()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_damaged_pages_are_detected_at_start(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, results("a", 2000, NOW - 5000, 1) + results("b", 2000, NOW - 5000, 1))
    store.close_sync()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page:len(data) - page] = b"\xff" * (len(data) - 3 * page)
    path.write_bytes(bytes(data))
    store = open_store(str(path))
    assert [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    state = State()
    assert store.restore("t", state) == 0  # a fresh, empty file
    store.close_sync()


def test_corrupt_file_is_refused_when_moving_aside_is_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(StorageError, match="corrupt"):
        open_store(str(path), move_corrupt_aside=False)
    assert path.read_bytes() == b"garbage" * 1000


def test_read_only_open_of_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="does not exist"):
        open_store(str(tmp_path / "nope.db"), read_only=True)


def test_a_file_of_another_schema_version_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.commit()
    db.close()
    before = path.read_bytes()
    store = open_store(str(path))
    store.record("t", Result("a", "pass", NOW, 0.0))
    wait_for(lambda: store.errors > 0, timeout=20, what="storage error")
    assert not store.up
    store.close_sync()
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def make_read_only(path: Path) -> None:
    """Make a file unwritable even for root (chattr +i), or by mode for other users."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True,
                                                        check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a file read-only")


def undo_read_only(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    path.chmod(0o644)


def test_read_only_file_degrades_to_memory_and_counts_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, results("a", 20, NOW - 100, 1))
    store.close_sync()
    make_read_only(path)
    try:
        store = open_store(str(path))
        state = State()
        assert store.restore("t", state) == 1  # still readable: history comes back
        store.record("t", Result("a", "pass", NOW, 0.0))
        wait_for(lambda: store.errors > 0, timeout=20, what="a storage error")
        registry = CollectorRegistry()
        registry.register(store)
        assert registry.get_sample_value("qualitygate_storage_up") == 0.0
        assert store.history("t", state).pass_ratio("a", 86400, NOW)[1] == 20
        store.close_sync()
    finally:
        undo_read_only(path)


def test_storage_recovers_when_the_file_becomes_writable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    filled(path, results("a", 5, NOW - 100, 1)).close_sync()
    make_read_only(path)
    try:
        store = open_store(str(path))
        store.record("t", Result("a", "pass", NOW, 0.0))
        wait_for(lambda: store.errors > 0, timeout=20, what="a storage error")
    finally:
        undo_read_only(path)
    # The writer keeps retrying with backoff; the open read-only connection is reopened after a fault.
    store.record("t", Result("a", "pass", NOW + 1, 0.0))
    wait_for(lambda: store.up and store.flush(1), timeout=60, what="storage to recover")
    store.close_sync()
    count = sqlite3.connect(path).execute("SELECT n_pass + n_fail + n_error FROM gates").fetchone()[0]
    assert count == 7


def test_unwritable_directory_keeps_serving_from_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = open_store(str(blocker / "sub" / "s.db"))  # the parent "directory" is a file
    assert not store.up and store.errors >= 1
    store.record("t", Result("a", "pass", NOW, 0.0))
    state = State()
    assert store.restore("t", state) == 0
    store.close_sync()


def test_write_throughput_counters(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db", results("a", 500, NOW - 1000, 1))
    registry = CollectorRegistry()
    registry.register(store)
    lines = generate_openmetrics(registry).decode()
    assert "qualitygate_storage_writes_total 500.0" in lines
    assert "# TYPE qualitygate_storage_writes counter" in lines  # OpenMetrics names counters without _total
    assert "qualitygate_storage_queue_length 0.0" in lines
    store.close_sync()


def test_record_does_not_wait_for_the_disk(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.db"))
    db = sqlite3.connect(tmp_path / "s.db", timeout=30)
    db.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        for r in results("a", 2000, NOW - 3000, 1):
            store.record("t", r)
        assert store.pending > 0  # queued, not written: record() returned anyway
    finally:
        db.rollback()
        db.close()
    assert store.flush(60)
    store.close_sync()
    with sqlite3.connect(tmp_path / "s.db") as c:
        assert c.execute("SELECT n_pass + n_fail + n_error FROM gates").fetchone()[0] == 2000


def test_empty_restore_for_unknown_tracker(tmp_path: Path) -> None:
    store = filled(tmp_path / "s.db", results("a", 3, time.time() - 10, 1))
    state = State()
    assert store.restore("other", state) == 0 and state.gates == {}
    assert store.restore("t", state, ["b"]) == 0
    assert store.restore("t", state, ["a"]) == 1
    store.close_sync()


def test_file_corrupted_while_running_degrades_then_is_moved_aside_at_next_start(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = filled(path, [Result(f"g{i % 300}", "pass", NOW + i, 0.0, {"value": i}) for i in range(3000)])
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows are in the main file now
    size = path.stat().st_size
    with open(path, "r+b") as fh:  # another program scribbles over everything past the header page
        fh.seek(4096)
        fh.write(bytes((i * 7919) % 251 for i in range(size - 4096)))
    for i in range(3000):
        store.record("t", Result(f"g{i % 300}", "fail", NOW + 4000 + i, 0.0))
    wait_for(lambda: store.errors > 0, timeout=30, what="the writer to notice")
    assert not store.up and "malformed" in store.last_error
    store.close_sync()
    again = open_store(str(path))
    assert [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    again.record("t", Result("g0", "pass", NOW, 0.0))
    assert again.flush(30) and again.up
    again.close_sync()


def test_two_corrupt_starts_in_a_row_keep_both_files(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    for text in (b"first broken file" * 100, b"second broken file" * 100):
        path.write_bytes(text)
        open_store(str(path)).close_sync()
    kept = sorted(p.read_bytes() for p in tmp_path.iterdir()
                  if ".corrupt-" in p.name and p.name[-4:] not in ("-wal", "-shm"))
    assert kept == [b"first broken file" * 100, b"second broken file" * 100]
