"""The state file's format: its tables, the schema marker, and how a file is judged ours, corrupt or foreign."""

from __future__ import annotations

import logging
import sqlite3

from exporter.log import kv
from exporter.state import evidence, packs

log = logging.getLogger("qualitygate.storage")

SCHEMA_VERSION = 2  # 2: uptime buckets packed per gate (state/packs.py); version 1 files are migrated
READABLE = frozenset({1, 2})  # versions a read-only open reads (a version-1 file has rows only)

_TABLES = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS gates (
        gid INTEGER PRIMARY KEY,
        tracker TEXT NOT NULL,
        gate TEXT NOT NULL,
        outcome TEXT,
        started REAL,
        duration REAL,
        measurements TEXT,
        message TEXT,
        last_pass REAL,
        since REAL,
        n_pass INTEGER NOT NULL DEFAULT 0,
        n_fail INTEGER NOT NULL DEFAULT 0,
        n_error INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL DEFAULT 0,
        unseen_since REAL,
        UNIQUE (tracker, gate))""",
    """CREATE TABLE IF NOT EXISTS history (
        gid INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        started REAL NOT NULL,
        duration REAL NOT NULL,
        outcome TEXT NOT NULL,
        measurements TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (gid, slot)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS buckets (
        gid INTEGER NOT NULL,
        start INTEGER NOT NULL,
        passed INTEGER NOT NULL,
        total INTEGER NOT NULL,
        PRIMARY KEY (gid, start)) WITHOUT ROWID""",
    packs.TABLE,
    """CREATE TABLE IF NOT EXISTS attestations (
        id INTEGER PRIMARY KEY,
        gid INTEGER NOT NULL,
        at REAL NOT NULL,
        value REAL NOT NULL,
        note TEXT NOT NULL,
        by TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS attestations_gid_at ON attestations (gid, at)",
    *evidence.TABLES,
]
OUR_TABLES = frozenset({"meta", "gates", "history", "buckets", packs.NAME, "attestations", *evidence.TABLE_NAMES})


class StorageError(Exception):
    """The state file cannot be used as asked (read-only open of a missing or broken file, a foreign file)."""


class ForeignFile(StorageError):
    """An SQLite file that is not a qualitygate state file: never written to."""


class BadMarker(Exception):
    """The schema marker is there but unreadable: the file is treated as corrupt."""


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) that waits for a lock."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def check(db: sqlite3.Connection) -> str | None:
    """None for a healthy file, else what is wrong (quick_check, then the schema marker)."""
    rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        return "; ".join(str(r) for r in rows[:3])
    try:
        schema_version(db)
    except BadMarker as exc:
        return str(exc)
    return None


def schema_version(db: sqlite3.Connection) -> int | None:
    """The file's schema version; None when it has no marker; BadMarker when the marker is not a version."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None:
        return None
    text = row[0]
    if type(text) is int:  # a marker written as a number by hand still says which version
        return text
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 9:
        raise BadMarker(f"schema version {str(text)[:40]!r} is not a version number")
    return int(text)


def foreign_tables(db: sqlite3.Connection) -> list[str]:
    """Tables no qualitygate version creates, in a file without our schema marker."""
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    return [n for n in names if n not in OUR_TABLES]


def ensure_schema(db: sqlite3.Connection, path: str) -> None:
    """WAL mode and our tables; refuse a foreign file and one written by a newer version."""
    version = schema_version(db)
    if version == 1:
        migrate(db)
        version = schema_version(db)
    if version is not None and version != SCHEMA_VERSION:
        raise StorageError(f"state file has schema version {version}, this exporter writes {SCHEMA_VERSION}")
    if version is None:
        others = foreign_tables(db)
        if others:
            shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise ForeignFile(f"{path} is not a qualitygate state file (it holds tables {shown} and no "
                              "qualitygate schema marker); refusing to write to it: give another --storage.path")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    # NORMAL in WAL mode: a crash of the process (kill -9) loses no commit; only a power cut may lose the last ones.
    db.execute("PRAGMA synchronous = NORMAL")
    if mode != "wal":
        log.warning("state file is not in WAL mode", extra=kv(mode=mode))
    existing = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == SCHEMA_VERSION and existing >= OUR_TABLES:
        return  # nothing to write: a read-only file of ours still opens for reading
    # Tables are created in one transaction with the marker, so a file is never half ours; IF NOT EXISTS
    # also adds tables of later minor versions (pushes) to a file of this schema version.
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _TABLES:
            db.execute(statement)
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


MIGRATIONS = {1: packs.migrate_1_to_2}  # from version N to N + 1, each in the transaction migrate() opens


def migrate(db: sqlite3.Connection) -> None:
    """Bring a file of an older schema version to this one: every step and the new marker in one transaction,
    so a failure (a read-only file, a full disk) leaves the file as it was. A file of a newer version is
    never touched (ensure_schema refuses it)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)  # again under the write lock: another process may have migrated it
        while version is not None and version in MIGRATIONS:
            MIGRATIONS[version](db)
            new = schema_version(db)
            assert new == version + 1, (version, new)
            version = new
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
