"""The state file's writer thread and its SQL: one transaction per batch, compaction and purges.

The writer commits what the event loop queued (`Store._put`). A failed transaction of the
environment (disk full, read-only file, lock held, corrupt page) puts the batch back and is retried
with backoff; a row that cannot be stored at all (text that is not valid Unicode, a value SQLite
refuses) is found by retrying the batch row by row and is given up on alone. An unexpected
exception anywhere in the loop is logged with its traceback, counted, and the loop starts again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from exporter.log import kv
from exporter.model import ERROR, FAIL, PASS, Result
from exporter.state import evidence, packs
from exporter.state.memory import HISTORY, bucket_start
from exporter.state.schema import BadMarker, StorageError, connect, ensure_schema

if TYPE_CHECKING:
    from concurrent.futures import Future

    from exporter.state.evidence import Push
    from exporter.state.store import Attestation, Store

log = logging.getLogger("qualitygate.storage")

Op = tuple[Any, ...]  # (kind, *arguments); kinds with a future ("attest", "push") carry it last

FLUSH_INTERVAL = 0.2  # seconds between writer wake-ups: the most a committed evaluation lags
BATCH = 1000  # queued writes per transaction
MAX_QUEUE = 200_000  # queued writes kept while the disk fails; the oldest are dropped beyond this
MAINTAIN_EVERY = 300.0  # seconds between bucket compactions and purges
GRACE = 7 * 86400.0  # how long a gate no longer in any config keeps its stored rows
ATTESTATIONS_KEPT = 100  # per gate, on disk
RETRY_MIN, RETRY_MAX = 1.0, 30.0  # writer backoff after a failed transaction (seconds)
REJECTS_LOGGED = 5  # rejected rows logged one by one per batch; the rest in one summary line
WITH_FUTURE = frozenset({"attest", "push"})


def environmental(exc: BaseException) -> bool:
    """True for a failure of the disk or the file (retry the batch later), False for one of a row's content."""
    if isinstance(exc, (OSError, MemoryError, sqlite3.OperationalError, StorageError)):
        return True
    return type(exc) is sqlite3.DatabaseError  # corrupt pages, not a database


def future_of(op: Op) -> Future[bool] | None:
    """The future an attestation or a push is answered by, else None."""
    return op[-1] if op[0] in WITH_FUTURE else None


# --- the thread ---------------------------------------------------------------------------------


class Writer:
    """The writer thread's connection, loop and statements."""

    def __init__(self, store: Store):
        self.store = store
        self.db: sqlite3.Connection | None = None
        self.gids: dict[tuple[str, str], int] = {}
        self.seqs: dict[int, int] = {}  # gid -> evaluations written (the history ring's position)
        self.data_version: int | None = None
        self.current: list[Op] = []  # the batch taken from the queue and not yet answered
        self.committed = False
        self.unfoldable: set[object] = set()  # gates whose buckets the compaction cannot fold (logged once)

    def run(self) -> None:
        """The thread's body: the loop under a guard that logs, counts and restarts it."""
        store = self.store
        delay = RETRY_MIN
        while True:
            try:
                self.loop()
                break
            except Exception as exc:  # a bug must not leave a dead thread while /metrics says up
                store.errors += 1
                store.up = False
                store._last_error = f"{type(exc).__name__}: {exc}"
                log.error("storage writer failed unexpectedly; restarting it", exc_info=True,
                          extra=kv(path=store.path, err=store._last_error, batch=len(self.current)))
                self.settle_crashed_batch()
                self.close()
                if store._stopping:
                    break
                store._wake.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
        if store._queue:
            log.warning("state not written at shutdown", extra=kv(path=store.path, writes=len(store._queue)))
            store._drop(len(store._queue))
        self.close()
        store._done(0)

    def loop(self) -> None:
        store = self.store
        retry_at = 0.0
        delay = RETRY_MIN
        next_maintenance = time.monotonic() + MAINTAIN_EVERY
        while True:
            store._wake.wait(FLUSH_INTERVAL)
            store._wake.clear()
            stopping = store._stopping
            if time.monotonic() >= retry_at or stopping:
                if self.drain():
                    delay = RETRY_MIN
                    if not store.up:
                        log.info("storage recovered", extra=kv(path=store.path))
                        store.up = True
                    # Only once configs said how long to keep (a bare `attest` never prunes).
                    if store._keep and not stopping and time.monotonic() >= next_maintenance:
                        store._put(("maintain", time.time()))
                        next_maintenance = time.monotonic() + MAINTAIN_EVERY
                    self.refresh_attestations()
                else:
                    retry_at = time.monotonic() + delay
                    delay = min(delay * 2, RETRY_MAX)
            store._done(0)  # wake flush() waiters: they check whether the writer gave up for now
            if stopping:
                return

    def settle_crashed_batch(self) -> None:
        """After a crash: a batch not committed goes back to the queue; a committed one is answered."""
        batch, self.current = self.current, []
        if not batch:
            return
        if self.committed:
            self.answer(batch, [])
        else:
            self.store._queue.extendleft(reversed(batch))

    def connect(self) -> bool:
        if self.db is not None:
            return True
        try:
            db = connect(self.store.path)
            try:
                ensure_schema(db, self.store.path)
            except BaseException:
                db.close()
                raise
            self.db = db
            self.data_version = None
            self.forget()
            return True
        except (sqlite3.Error, OSError, StorageError, BadMarker) as exc:
            self.store._fault("cannot open the state file for writing; keeping state in memory", exc)
            return False

    def close(self) -> None:
        if self.db is None:
            return
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.db.execute("PRAGMA optimize")
        except sqlite3.Error:
            pass  # a read-only or full disk: the WAL stays and is replayed at the next open
        with contextlib.suppress(sqlite3.Error):
            self.db.close()
        self.db = None

    def forget(self) -> None:
        """Drop cached gids and ring positions: a rolled-back transaction may have made them."""
        self.gids.clear()
        self.seqs.clear()

    def drain(self) -> bool:
        """Commit the whole queue in batches; False after a failed transaction of the environment."""
        store = self.store
        if not self.connect():
            return False
        while store._queue:
            batch = self.current = []
            self.committed = False
            while len(batch) < BATCH:
                try:
                    batch.append(store._queue.popleft())
                except IndexError:  # empty, or emptied by a drop on the event loop
                    break
            rejected: list[tuple[Op, BaseException]] = []
            try:
                try:
                    self.transaction(batch, isolate=False)
                except Exception as exc:
                    if environmental(exc):
                        raise
                    # Some row cannot be stored: again row by row, so only that row is given up on.
                    self.rollback()
                    rejected = self.transaction(batch, isolate=True)
            except Exception as exc:
                if not environmental(exc):
                    raise
                self.rollback()
                self.current = []
                store._queue.extendleft(reversed(batch))
                if len(store._queue) > MAX_QUEUE:
                    store._drop(len(store._queue) - MAX_QUEUE)
                store._fault("storage write failed; serving from memory and retrying", exc)
                self.close()  # reopen on retry: a file made writable again, or replaced, is picked up
                return False
            self.committed = True
            self.answer(batch, rejected)
            self.current = []
        return True

    def answer(self, batch: list[Op], rejected: list[tuple[Op, BaseException]]) -> None:
        """Resolve the batch's futures, count it, and only then let flush() see it done."""
        store = self.store
        bad = {id(op): exc for op, exc in rejected}
        for n, (op, exc) in enumerate(rejected):
            if n < REJECTS_LOGGED:
                log.error("a write cannot be stored; gave up on it alone", exc_info=exc,
                          extra=kv(path=store.path, op=op[0], tracker=op[1] if len(op) > 1 else "",
                                   err=f"{type(exc).__name__}: {exc}"[:300]))
        if len(rejected) > REJECTS_LOGGED:
            log.error("more writes cannot be stored", extra=kv(path=store.path, writes=len(rejected) - REJECTS_LOGGED))
        store.errors += len(rejected)
        store.dropped += len(rejected)
        store.writes += len(batch) - len(rejected)
        for op in batch:
            done = future_of(op)
            if done is None or done.done():
                continue
            why = bad.get(id(op))
            if why is None:
                done.set_result(True)
            else:
                done.set_exception(StorageError(f"cannot store this {op[0]}: {type(why).__name__}: {why}"[:300]))
        store._done(len(batch))

    def rollback(self) -> None:
        self.forget()  # gids and seqs of the failed transaction are gone
        if self.db is None:
            return
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            self.close()

    def transaction(self, batch: list[Op], isolate: bool) -> list[tuple[Op, BaseException]]:
        """Write a batch in one transaction; with isolate, each row in a savepoint and the bad ones left out."""
        db = self.db
        assert db is not None
        rejected: list[tuple[Op, BaseException]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            if not isolate:
                self.write(db, batch)
            else:
                for op in batch:
                    db.execute("SAVEPOINT one_row")
                    try:
                        self.write(db, [op])
                    except Exception as exc:
                        if environmental(exc):
                            raise
                        db.execute("ROLLBACK TO one_row")
                        self.forget()
                        rejected.append((op, exc))
                    db.execute("RELEASE one_row")
            db.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        return rejected

    def write(self, db: sqlite3.Connection, batch: list[Op]) -> None:
        results: list[tuple[str, Result]] = []
        for op in batch:
            if op[0] == "result":
                results.append((op[1], op[2]))
                continue
            if results:
                self.write_results(db, results)
                results = []
            getattr(self, "op_" + op[0])(db, *op[1:])
        if results:
            self.write_results(db, results)

    # --- statements ---------------------------------------------------------------------------

    def gid(self, db: sqlite3.Connection, tracker: str, gate: str) -> int:
        key = (tracker, gate)
        gid = self.gids.get(key)
        if gid is None:
            db.execute("INSERT INTO gates (tracker, gate) VALUES (?, ?) ON CONFLICT DO NOTHING", key)
            gid, seq = db.execute("SELECT gid, seq FROM gates WHERE tracker = ? AND gate = ?", key).fetchone()
            self.gids[key], self.seqs[gid] = gid, seq
        return gid

    def write_results(self, db: sqlite3.Connection, results: list[tuple[str, Result]]) -> None:
        """Evaluation results, three statements for the lot (executemany keeps the loop in C)."""
        gate_rows, history_rows, bucket_rows = [], [], []
        for tracker, r in results:
            gid = self.gid(db, tracker, r.gate)
            seq = self.seqs[gid] = self.seqs[gid] + 1
            meas = json.dumps(r.measurements, separators=(",", ":"))
            passed = r.outcome == PASS
            gate_rows.append((r.outcome, r.started, r.outcome, r.started, r.duration, meas, r.message, passed,
                              r.started, passed, r.outcome == FAIL, r.outcome == ERROR, seq, gid))
            history_rows.append((gid, seq % HISTORY, seq, r.started, r.duration, r.outcome, meas, r.message))
            bucket_rows.append((gid, bucket_start(r.started, r.started), int(passed)))  # as State.record does
        db.executemany(
            "UPDATE gates SET since = CASE WHEN outcome IS ? THEN since ELSE ? END, outcome = ?, started = ?, "
            "duration = ?, measurements = ?, message = ?, last_pass = CASE WHEN ? THEN ? ELSE last_pass END, "
            "n_pass = n_pass + ?, n_fail = n_fail + ?, n_error = n_error + ?, seq = ?, unseen_since = NULL "
            "WHERE gid = ?", gate_rows)
        db.executemany("INSERT OR REPLACE INTO history (gid, slot, seq, started, duration, outcome, measurements, "
                       "message) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", history_rows)
        db.executemany("INSERT INTO buckets (gid, start, passed, total) VALUES (?, ?, ?, 1) ON CONFLICT (gid, start) "
                       "DO UPDATE SET passed = passed + excluded.passed, total = total + 1", bucket_rows)

    def op_bucket(self, db: sqlite3.Connection, tracker: str, gate: str, start: int, passed: int, total: int) -> None:
        gid = self.gid(db, tracker, gate)
        db.execute("INSERT INTO buckets (gid, start, passed, total) VALUES (?, ?, ?, ?) ON CONFLICT (gid, start) "
                   "DO UPDATE SET passed = passed + excluded.passed, total = total + excluded.total",
                   (gid, start, passed, total))

    def op_attest(self, db: sqlite3.Connection, tracker: str, gate: str, att: Attestation, done: object) -> None:
        gid = self.gid(db, tracker, gate)
        db.execute("INSERT INTO attestations (gid, at, value, note, by) VALUES (?, ?, ?, ?, ?)",
                   (gid, att.at, att.value, att.note, att.by))

    def op_push(self, db: sqlite3.Connection, tracker: str, gate: str, push: Push, done: object) -> None:
        evidence.insert(db, self.gid(db, tracker, gate), push)

    def op_configured(self, db: sqlite3.Connection, names: frozenset[tuple[str, str]], now: float) -> None:
        db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (tracker TEXT, gate TEXT, PRIMARY KEY (tracker, gate))")
        db.execute("DELETE FROM temp.seen")
        db.executemany("INSERT INTO temp.seen VALUES (?, ?)", names)
        match = "EXISTS (SELECT 1 FROM temp.seen s WHERE s.tracker = gates.tracker AND s.gate = gates.gate)"
        gone = db.execute(f"UPDATE gates SET unseen_since = ? WHERE unseen_since IS NULL AND NOT {match}",
                          (now,)).rowcount
        back = db.execute(f"UPDATE gates SET unseen_since = NULL WHERE unseen_since IS NOT NULL AND {match}").rowcount
        if gone:
            log.warning("gates no longer configured; their stored state is kept for the grace period",
                        extra=kv(gates=gone, grace_days=GRACE / 86400))
        if back:
            log.info("gates configured again; their stored state is kept", extra=kv(gates=back))

    def op_maintain(self, db: sqlite3.Connection, now: float) -> None:
        # Coarsen and prune as GateState.compact does, folding the rows written since into the packs
        # (state/packs.py). Trackers no config names keep their buckets until their gates' grace period ends.
        packs.fold(db, now, self.store._keep, self.unfoldable)
        expired = [r[0] for r in db.execute("SELECT gid FROM gates WHERE unseen_since < ?", (now - GRACE,))]
        for table in ("history", "buckets", packs.NAME, "attestations", *evidence.TABLE_NAMES, "gates"):
            db.executemany(f"DELETE FROM {table} WHERE gid = ?", ((g,) for g in expired))
        if expired:
            gone = set(expired)
            self.gids = {k: v for k, v in self.gids.items() if v not in gone}
            self.seqs = {k: v for k, v in self.seqs.items() if k not in gone}
            log.info("dropped stored state of gates unconfigured beyond the grace period",
                     extra=kv(gates=len(expired), grace_days=GRACE / 86400))
        db.execute("DELETE FROM attestations WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
                   "(PARTITION BY gid ORDER BY at DESC, id DESC) AS rn FROM attestations) WHERE rn > ?)",
                   (ATTESTATIONS_KEPT,))
        evidence.prune(db)

    def refresh_attestations(self) -> None:
        """Pick up attestations another process (`qualitygate attest --storage.path`) committed."""
        if self.db is None:
            return
        try:
            (version,) = self.db.execute("PRAGMA data_version").fetchone()
            if version != self.data_version:
                self.data_version = version
                self.store._load_attestations(self.db)
        except sqlite3.Error as exc:
            self.store._fault("cannot read attestations", exc)
