"""Opening the state file: the integrity check, a corrupt file moved aside, read-only opens, and the
check started early in a thread (`Precheck`) so that it overlaps the config load at start-up."""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading
import time

from exporter.log import kv
from exporter.state.schema import SCHEMA_VERSION, BadMarker, StorageError, check, connect, schema_version

log = logging.getLogger("qualitygate.storage")


class Precheck:
    """The integrity check of an existing state file, in a thread of its own, on a read-only connection.

    PRAGMA quick_check reads the whole file (0.3 s for a month of 10,000 gates) in one SQLite call,
    which releases the GIL: started before the config is loaded, it runs on the other core. It only
    ever says "healthy": whatever else it meets (corruption, a foreign file, an error) the opener
    checks again itself and handles as it always did. Nothing is written, nothing created.
    """

    def __init__(self, path: str):
        self.path = path
        self.healthy = False
        self._thread: threading.Thread | None = None
        if os.path.isfile(path):
            self._thread = threading.Thread(target=self._run, name="state-precheck", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            try:
                db.execute("PRAGMA busy_timeout = 5000")
                self.healthy = check(db) is None and schema_version(db) is not None
            finally:
                db.close()
        except Exception:  # noqa: BLE001 - not known healthy: the opener checks for itself
            self.healthy = False

    def verified(self, path: str) -> bool:
        """True when the check ran for this path and found the file healthy (waits for it)."""
        if self._thread is None or os.path.abspath(path) != os.path.abspath(self.path):
            return False
        self._thread.join()
        return self.healthy


def checked_connection(path: str, move_corrupt_aside: bool, early: Precheck | None = None) -> sqlite3.Connection:
    """A connection to a file that passes quick_check (a corrupt one is moved aside first); the check is
    skipped when `early` already found this file healthy."""
    try:
        db: sqlite3.Connection | None = connect(path)
        assert db is not None
        problem = None if early is not None and early.verified(path) else check(db)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise
        problem, db = str(exc), None
    if problem is None:
        assert db is not None
        return db
    if db is not None:
        db.close()
    if not move_corrupt_aside:
        raise StorageError(f"state file {path} is corrupt: {problem}")
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    n = 1
    while os.path.exists(aside):  # two bad starts in one second must not overwrite the first
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{n}"
        n += 1
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    log.error("state file is corrupt; moved it aside and starting with an empty one",
              extra=kv(path=path, moved_to=aside, problem=problem))
    return connect(path)


def read_only_connection(path: str) -> sqlite3.Connection:
    """A read-only connection to one of our files of this schema version, or StorageError saying why not."""
    if not os.path.isfile(path):
        raise StorageError(f"state file {path} does not exist")
    uri = pathlib.Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        version = schema_version(db)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read state file {path}: {exc}") from None
    except BadMarker as exc:
        db.close()
        raise StorageError(f"state file {path} is corrupt: {exc}") from None
    if version is None:
        db.close()
        raise StorageError(f"{path} is not a qualitygate state file (no qualitygate schema marker)")
    if version != SCHEMA_VERSION:
        db.close()
        raise StorageError(f"state file {path} has schema version {version!r}, expected {SCHEMA_VERSION}")
    return db
