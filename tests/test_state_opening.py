"""The state file's integrity check started early (serve starts it before loading the config): it only ever
lets the opener skip its own check for a healthy file; corrupt, foreign and missing files go as they always did."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from exporter.state import opening
from exporter.state.memory import State
from exporter.state.opening import Precheck
from exporter.state.store import ForeignFile, open_store
from tests.test_storage_faults import aside_files, foreign, results, written


def test_a_healthy_file_is_checked_once_early(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 5))
    early = Precheck(str(path))
    assert early.verified(str(path))
    calls = []
    monkeypatch.setattr(opening, "check", lambda db: calls.append(db))  # a second check would be counted
    store = open_store(str(path), early=early)
    assert calls == [] and store.restore("t", State()) == 2 and store.up
    store.close_sync()


def test_a_corrupt_file_is_still_moved_aside(tmp_path: Path, caplog) -> None:
    path = tmp_path / "s.db"
    written(path, results("a", 5))
    with sqlite3.connect(path) as c:
        c.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    before = path.read_bytes()
    early = Precheck(str(path))
    assert not early.verified(str(path))
    with caplog.at_level(logging.ERROR, logger="qualitygate.storage"):
        store = open_store(str(path), early=early)
    assert [p.read_bytes() for p in aside_files(tmp_path)] == [before]
    assert store.restore("t", State()) == 0
    store.close_sync()


def test_garbage_is_still_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    garbage = b"not an SQLite database" * 200
    path.write_bytes(garbage)
    early = Precheck(str(path))
    store = open_store(str(path), early=early)
    assert [p.read_bytes() for p in aside_files(tmp_path)] == [garbage]
    store.close_sync()


def test_a_foreign_file_is_still_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    before = foreign(path)
    early = Precheck(str(path))
    assert not early.verified(str(path))
    with pytest.raises(ForeignFile):
        open_store(str(path), early=early)
    assert path.read_bytes() == before


def test_a_missing_file_is_not_created_by_the_check(tmp_path: Path) -> None:
    path = tmp_path / "new" / "s.db"
    early = Precheck(str(path))
    assert not early.verified(str(path)) and not path.parent.exists()
    store = open_store(str(path), early=early)
    assert path.exists() and store.up
    store.close_sync()


def test_a_check_of_another_path_is_not_taken(tmp_path: Path) -> None:
    written(tmp_path / "a.db", results("a", 2))
    assert not Precheck(str(tmp_path / "a.db")).verified(str(tmp_path / "b.db"))
