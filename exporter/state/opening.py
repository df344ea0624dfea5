"""Opening the state file: the integrity check, a corrupt file moved aside, read-only opens, and the
check started early in a thread (`Precheck`, which then also reads the stored states ahead) so that it
overlaps the config load at start-up."""

from __future__ import annotations

import logging
import os
import pathlib
import sqlite3
import threading
import time

from exporter.log import kv
from exporter.state.restore import Prefetched
from exporter.state.schema import READABLE, SCHEMA_VERSION, BadMarker, StorageError, check, connect, schema_version

log = logging.getLogger("qualitygate.storage")


class Precheck:
    """The integrity check of an existing state file, in a thread of its own, on a read-only connection
    (and, in a second one, the stored states read ahead for Store.restore: restore.Prefetched).

    PRAGMA quick_check reads the whole file (0.3 s for a month of 10,000 gates) in one SQLite call,
    which releases the GIL: started before the config is loaded, it runs on the other core. It only
    ever says "healthy": whatever else it meets (corruption, a foreign file, an error) the opener
    checks again itself and handles as it always did. Nothing is written, nothing created.
    """

    def __init__(self, path: str, prefetch: bool = True):
        self.path = path
        self.healthy = False
        # With prefetch, the file's stored states, read in a second thread meanwhile: the check's one SQLite call
        # leaves the GIL to it. Kept only when the check finds the file healthy.
        self.stored: Prefetched | None = None
        self._threads: list[threading.Thread] = []
        if os.path.isfile(path):
            for target, name in [(self._check, "state-precheck"), *([(self._read, "state-prefetch")] * prefetch)]:
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def _connect(self) -> sqlite3.Connection:
        uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        return db

    def _check(self) -> None:
        try:
            db = self._connect()
            try:
                self.healthy = check(db) is None and schema_version(db) is not None
            finally:
                db.close()
        except Exception:  # noqa: BLE001 - not known healthy: the opener checks for itself
            self.healthy = False

    def _read(self) -> None:
        try:
            db = self._connect()
            try:
                self.stored = Prefetched(db)
            finally:
                db.close()
        except Exception:  # noqa: BLE001 - a file that cannot be read ahead is read by restore as always
            self.stored = None

    def verified(self, path: str) -> bool:
        """True when the check ran for this path and found the file healthy (waits for it, and the read ahead)."""
        if not self._threads or os.path.abspath(path) != os.path.abspath(self.path):
            return False
        for thread in self._threads:
            thread.join()
        if not self.healthy:
            self.stored = None  # read from a file that is not sound: never used
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
    if version not in READABLE:  # an older version is read as it is: migrating is for a writer
        db.close()
        raise StorageError(f"state file {path} has schema version {version!r}, expected {SCHEMA_VERSION}")
    return db
