"""Durable state in one SQLite file: last outcomes, bounded history, uptime buckets, attestations.

The event loop only appends to a queue; one writer thread commits the queue in batches (one
transaction per batch). A storage fault is logged and counted, and the exporter keeps serving from
memory; the writer retries with backoff and catches up when the disk recovers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import logging
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exporter.exposition.gates import simple
from exporter.log import kv
from exporter.model import ERROR, FAIL, PASS, Result
from exporter.report.status import rfc3339
from exporter.state.memory import _TIERS as TIERS  # the same coarsening as memory, so both agree after a restart
from exporter.state.memory import HISTORY, GateState, State, bucket_start

if TYPE_CHECKING:
    from exporter.config.model import Config

log = logging.getLogger("qualitygate.storage")

DEFAULT_PATH = "data/qualitygate.db"
SCHEMA_VERSION = 1
FLUSH_INTERVAL = 0.2  # seconds between writer wake-ups: the most a committed evaluation lags
BATCH = 1000  # queued writes per transaction
MAX_QUEUE = 200_000  # queued writes kept while the disk fails; the oldest are dropped beyond this
MAINTAIN_EVERY = 300.0  # seconds between bucket compactions and purges
GRACE = 7 * 86400.0  # how long a gate no longer in any config keeps its stored rows
RETENTION_MARGIN = 2 * 86400.0  # uptime buckets kept beyond the longest window (daily buckets straddle it)
ATTESTATIONS_SHOWN = 20  # per gate, in memory and in /api/gates/{id}
ATTESTATIONS_KEPT = 100  # per gate, on disk
RETRY_MIN, RETRY_MAX = 1.0, 30.0  # writer backoff after a failed transaction (seconds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gates (
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
    UNIQUE (tracker, gate)
);
CREATE TABLE IF NOT EXISTS history (
    gid INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    started REAL NOT NULL,
    duration REAL NOT NULL,
    outcome TEXT NOT NULL,
    measurements TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (gid, slot)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS buckets (
    gid INTEGER NOT NULL,
    start INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    total INTEGER NOT NULL,
    PRIMARY KEY (gid, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attestations (
    id INTEGER PRIMARY KEY,
    gid INTEGER NOT NULL,
    at REAL NOT NULL,
    value REAL NOT NULL,
    note TEXT NOT NULL,
    by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attestations_gid_at ON attestations (gid, at);
"""


class StorageError(Exception):
    """The state file cannot be used as asked (read-only open of a missing or broken file)."""


@dataclass(frozen=True)
class Attestation:
    """A person's statement of a manual gate's value."""

    value: float
    at: float  # Unix time it was made
    by: str = "anonymous"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """The API form."""
        return {"value": self.value, "note": self.note, "by": self.by, "at": rfc3339(self.at), "at_seconds": self.at}


def retention(config: Config) -> float:
    """Seconds of uptime buckets a tracker needs: its longest window plus a margin."""
    windows = [config.uptime_window]
    windows += [g.spec.window for g in config.gates if g.kind == "uptime" and g.spec.window is not None]
    return max(windows) + RETENTION_MARGIN


class History:
    """What uptime and manual probes read (the probes' History protocol) for one tracker."""

    def __init__(self, store: Store, tracker: str, state: State | None):
        self._store, self._tracker, self._state = store, tracker, state

    def pass_ratio(self, gate_id: str, window: float, now: float) -> tuple[int, int]:
        """(passed, total) evaluations over the window: memory when serving, else the file."""
        if self._state is not None:
            return self._state.pass_ratio(gate_id, window, now)
        return self._store.pass_ratio(self._tracker, gate_id, window, now)

    def latest_attestation(self, gate_id: str) -> Attestation | None:
        """The newest attestation of a gate, or None."""
        got = self._store.attestations(self._tracker, gate_id)
        return got[0] if got else None


def open_store(path: str, read_only: bool = False, move_corrupt_aside: bool = True) -> Store:
    """Open (or create) the state file; a corrupt file is renamed aside, never overwritten."""
    store = Store(path, read_only)
    store._open(move_corrupt_aside)
    return store


class Store:
    """The state file. Public methods run on the event loop; the writer thread owns all writes."""

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self.up = True
        self.errors = 0  # failed transactions and failed opens
        self.writes = 0  # queued writes committed
        self.dropped = 0  # queued writes given up on
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._in_batch = 0
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._attest: dict[tuple[str, str], tuple[Attestation, ...]] = {}  # newest first
        self._attest_lock = threading.Lock()
        self._keep: dict[str, float] = {}
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._last_error_log = 0.0

    # --- opening ----------------------------------------------------------------------------

    def _open(self, move_corrupt_aside: bool) -> None:
        if self.read_only:
            self._open_read_only()
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._reader = self._checked_connection(move_corrupt_aside)
        except (sqlite3.Error, OSError) as exc:
            self._fault("cannot open the state file; keeping state in memory only", exc)
            self._reader = None
        if self._reader is not None:
            try:
                _ensure_schema(self._reader)
            except (sqlite3.Error, StorageError) as exc:
                # A read-only file still restores; a file of another schema version is left alone.
                self._fault("cannot prepare the state file for writing; keeping state in memory", exc)
                if _schema_version(self._reader) != SCHEMA_VERSION:
                    self._reader.close()
                    self._reader = None
        if self._reader is not None:
            self._load_attestations()
        self._thread = threading.Thread(target=self._run, name="qualitygate-storage", daemon=True)
        self._thread.start()

    def _open_read_only(self) -> None:
        if not os.path.isfile(self.path):
            raise StorageError(f"state file {self.path} does not exist")
        uri = pathlib.Path(os.path.abspath(self.path)).as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            version = _schema_version(db)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read state file {self.path}: {exc}") from None
        if version != SCHEMA_VERSION:
            db.close()
            raise StorageError(f"state file {self.path} has schema version {version!r}, expected {SCHEMA_VERSION}")
        self._reader = db
        self._load_attestations()

    def _checked_connection(self, move_corrupt_aside: bool) -> sqlite3.Connection:
        """A connection to a file that passes quick_check (a corrupt one is moved aside first)."""
        try:
            db = _connect(self.path)
            problem = _check(db)
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
            raise StorageError(f"state file {self.path} is corrupt: {problem}")
        aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        n = 1
        while os.path.exists(aside):  # two bad starts in one second must not overwrite the first
            aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{n}"
            n += 1
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        log.error("state file is corrupt; moved it aside and starting with an empty one",
                  extra=kv(path=self.path, moved_to=aside, problem=problem))
        return _connect(self.path)

    # --- the event-loop side ----------------------------------------------------------------

    def record(self, tracker: str, result: Result) -> None:
        """Queue one evaluation result for the writer (never blocks)."""
        if not self.read_only:
            self._put(("result", tracker, result))

    def configured(self, configs: Iterable[Config], now: float | None = None) -> None:
        """The gates configs name now: others are marked unseen and dropped after GRACE."""
        configs = list(configs)
        self._keep = {c.tracker: retention(c) for c in configs}
        if not self.read_only:
            names = frozenset((c.tracker, g.id) for c in configs for g in c.gates)
            self._put(("configured", names, time.time() if now is None else now))

    def maintain(self, now: float | None = None) -> None:
        """Queue a bucket compaction and purge now (the writer also runs one every few minutes)."""
        if not self.read_only:
            self._put(("maintain", time.time() if now is None else now))

    def merge_buckets(self, tracker: str, gate_id: str, buckets: dict[int, tuple[int, int]]) -> None:
        """Queue uptime counts to add to a gate's buckets (imports, and the size benchmark)."""
        if not self.read_only:
            for start, (passed, total) in buckets.items():
                self._put(("bucket", tracker, gate_id, int(start), int(passed), int(total)))

    def attest(self, tracker: str, gate_id: str, att: Attestation) -> concurrent.futures.Future[bool]:
        """Keep an attestation (visible at once) and queue it; the future is done once it is on disk."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if self.read_only:
            done.set_exception(StorageError("the state file is open read-only"))
            return done
        self._remember(tracker, gate_id, att)
        self._put(("attest", tracker, gate_id, att, done))
        return done

    def history(self, tracker: str, state: State | None) -> History:
        """The History that uptime and manual gates of this tracker read."""
        return History(self, tracker, state)

    def attestations(self, tracker: str, gate_id: str) -> tuple[Attestation, ...]:
        """The newest attestations of a gate, newest first (from memory)."""
        return self._attest.get((tracker, gate_id), ())

    def pass_ratio(self, tracker: str, gate_id: str, window: float, now: float) -> tuple[int, int]:
        """(passed, total) evaluations over the window, read from the file."""
        if self._reader is None:
            return 0, 0
        with self._reader_lock:
            row = self._reader.execute(
                "SELECT coalesce(sum(b.passed), 0), coalesce(sum(b.total), 0) FROM buckets b "
                "JOIN gates g ON g.gid = b.gid WHERE g.tracker = ? AND g.gate = ? AND b.start >= ?",
                (tracker, gate_id, now - window)).fetchone()
        return int(row[0]), int(row[1])

    def restore(self, tracker: str, state: State, gate_ids: Iterable[str] | None = None) -> int:
        """Fill stored gates' states (only those named, when given); returns how many were restored."""
        if self._reader is None:
            return 0
        self.flush(timeout=5.0)
        wanted = None if gate_ids is None else set(gate_ids)
        t0 = time.monotonic()
        try:
            with self._reader_lock:
                restored = self._restore(tracker, state, wanted)
        except sqlite3.Error as exc:
            self._fault("cannot read stored state; those gates start empty", exc)
            return 0
        if restored:
            log.info("restored stored state", extra=kv(tracker=tracker, gates=restored,
                                                       seconds=round(time.monotonic() - t0, 3)))
        return restored

    def _restore(self, tracker: str, state: State, wanted: set[str] | None) -> int:
        db = self._reader
        assert db is not None
        rows = db.execute("SELECT gid, gate, outcome, started, duration, measurements, message, last_pass, since, "
                          "n_pass, n_fail, n_error FROM gates WHERE tracker = ?", (tracker,)).fetchall()
        if wanted is not None:
            rows = [r for r in rows if r[1] in wanted]
        gates: dict[int, tuple[str, GateState]] = {}
        for (gid, gate, outcome, started, duration, _, message, last_pass, since, np, nf, ne), meas in zip(
                rows, _decode(r[5] for r in rows), strict=True):
            st = GateState()
            if outcome is not None:
                st.result = Result(gate, outcome, started, duration, meas, message or "")
            st.last_pass, st.since = last_pass, since
            st.counts = {PASS: np, FAIL: nf, ERROR: ne}
            gates[gid] = (gate, st)
        if not gates:
            return 0
        # Whole-tracker queries when most gates are wanted, queries by gid otherwise. Buckets come
        # grouped per gate as three JSON integer arrays: one parse instead of a million row tuples.
        bulk = wanted is None or len(gates) > 200
        if bulk:
            where, params = "gid IN (SELECT gid FROM gates WHERE tracker = ?)", (tracker,)
        else:
            where, params = f"gid IN ({','.join('?' * len(gates))})", tuple(gates)
        hist_rows = db.execute("SELECT gid, started, duration, outcome, measurements, message FROM history "
                               f"WHERE {where} ORDER BY gid, seq", params).fetchall()
        bucket_rows = db.execute("SELECT gid, '[[' || group_concat(start) || '],[' || group_concat(passed) || '],[' "
                                 f"|| group_concat(total) || ']]' FROM buckets WHERE {where} GROUP BY gid",
                                 params).fetchall()
        for (gid, started, duration, outcome, _, message), meas in zip(
                hist_rows, _decode(r[4] for r in hist_rows), strict=True):
            entry = gates.get(gid)
            if entry is not None:
                entry[1].history.append(Result(entry[0], outcome, started, duration, meas, message))
        for (gid, _), columns in zip(
                bucket_rows, json.loads("[" + ",".join(r[1] for r in bucket_rows) + "]"), strict=True):
            entry = gates.get(gid)
            if entry is not None:
                entry[1].buckets = {start: [passed, total] for start, passed, total in zip(*columns, strict=True)}
        for gate, st in gates.values():
            state.gates[gate] = st
        return len(gates)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed (or the writer gave up for now)."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while (self._queue or self._in_batch) and self.up and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return not self._queue and not self._in_batch

    @property
    def last_error(self) -> str:
        """The last storage error, for messages."""
        return self._last_error

    def metric_lines(self, openmetrics: bool) -> list[str]:
        """The storage self-metrics for /metrics."""
        out = simple("qualitygate_storage_up", "gauge",
                     "1 if the state file is being written; 0 while degraded to memory only.",
                     float(self.up), openmetrics)
        out += simple("qualitygate_storage_errors_total", "counter",
                      "Failed storage transactions and opens.", self.errors, openmetrics)
        out += simple("qualitygate_storage_writes_total", "counter",
                      "Queued writes (evaluations, attestations, counts) committed to the state file.",
                      self.writes, openmetrics)
        out += simple("qualitygate_storage_dropped_total", "counter",
                      "Queued writes given up on (queue full while the disk failed, or at shutdown).",
                      self.dropped, openmetrics)
        out += simple("qualitygate_storage_queue_length", "gauge",
                      "Writes waiting for the storage writer.", len(self._queue) + self._in_batch, openmetrics)
        return out

    async def close(self) -> None:
        """Flush the queue and close the file."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """close() for callers without an event loop (the attest command)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # --- shared helpers ---------------------------------------------------------------------

    def _put(self, op: tuple[Any, ...]) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self._drop(1)
        self._queue.append(op)

    def _drop(self, n: int) -> None:
        for _ in range(n):
            try:
                op = self._queue.popleft()
            except IndexError:  # the writer took the rest meanwhile
                return
            self.dropped += 1
            if op[0] == "attest":
                op[4].set_exception(StorageError("storage queue overflowed"))

    def _remember(self, tracker: str, gate_id: str, att: Attestation) -> None:
        with self._attest_lock:
            old = self._attest.get((tracker, gate_id), ())
            if att not in old:
                merged = sorted((att, *old), key=lambda a: a.at, reverse=True)
                self._attest[(tracker, gate_id)] = tuple(merged[:ATTESTATIONS_SHOWN])

    def _load_attestations(self, db: sqlite3.Connection | None = None) -> None:
        db = db or self._reader
        assert db is not None
        rows = db.execute(
            "SELECT g.tracker, g.gate, a.value, a.at, a.by, a.note FROM ("
            "  SELECT *, row_number() OVER (PARTITION BY gid ORDER BY at DESC, id DESC) AS rn FROM attestations"
            ") a JOIN gates g ON g.gid = a.gid WHERE a.rn <= ? ORDER BY a.at DESC",
            (ATTESTATIONS_SHOWN,)).fetchall()
        for tracker, gate, value, at, by, note in rows:
            self._remember(tracker, gate, Attestation(value, at, by, note))

    def _fault(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        was_up, self.up = self.up, False
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        # One line per new problem, then a reminder a minute: a full disk must not flood the log.
        if was_up or text != self._last_error or now - self._last_error_log > 60:
            log.error(what, extra=kv(path=self.path, err=text, queued=len(self._queue), errors=self.errors))
            self._last_error, self._last_error_log = text, now

    # --- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        writer = _Writer(self)
        retry_at = 0.0
        delay = RETRY_MIN
        next_maintenance = time.monotonic() + MAINTAIN_EVERY
        while True:
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            stopping = self._stopping
            if time.monotonic() >= retry_at or stopping:
                if writer.drain():
                    delay = RETRY_MIN
                    if not self.up:
                        log.info("storage recovered", extra=kv(path=self.path))
                        self.up = True
                    # Only once configs said how long to keep (a bare `attest` never prunes).
                    if self._keep and not stopping and time.monotonic() >= next_maintenance:
                        self._put(("maintain", time.time()))
                        next_maintenance = time.monotonic() + MAINTAIN_EVERY
                    writer.refresh_attestations()
                else:
                    retry_at = time.monotonic() + delay
                    delay = min(delay * 2, RETRY_MAX)
            with self._idle:
                self._idle.notify_all()
            if stopping:
                break
        if self._queue:
            log.warning("state not written at shutdown", extra=kv(path=self.path, writes=len(self._queue)))
            self._drop(len(self._queue))
        writer.close()
        with self._idle:
            self._idle.notify_all()


class _Writer:
    """The writer thread's connection and statements."""

    def __init__(self, store: Store):
        self.store = store
        self.db: sqlite3.Connection | None = None
        self.gids: dict[tuple[str, str], int] = {}
        self.seqs: dict[int, int] = {}  # gid -> evaluations written (the history ring's position)
        self.data_version: int | None = None

    def connect(self) -> bool:
        if self.db is not None:
            return True
        try:
            db = _connect(self.store.path)
            _ensure_schema(db)
            self.db = db
            self.data_version = None
            self.gids.clear()
            self.seqs.clear()
            return True
        except (sqlite3.Error, OSError, StorageError) as exc:
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
        self.db.close()
        self.db = None

    def drain(self) -> bool:
        """Commit the whole queue in batches; False after a failed transaction."""
        store = self.store
        if not self.connect():
            return False
        while store._queue:
            batch = []
            while len(batch) < BATCH:
                try:
                    batch.append(store._queue.popleft())
                except IndexError:  # empty, or emptied by a drop on the event loop
                    break
            store._in_batch = len(batch)
            try:
                self.write(batch)
            except (sqlite3.Error, OSError) as exc:
                store._in_batch = 0
                self.gids.clear()  # gids and seqs of the failed transaction are gone
                self.seqs.clear()
                self._rollback()
                store._queue.extendleft(reversed(batch))
                if len(store._queue) > MAX_QUEUE:
                    store._drop(len(store._queue) - MAX_QUEUE)
                store._fault("storage write failed; serving from memory and retrying", exc)
                self.close()  # reopen on retry: a file made writable again, or replaced, is picked up
                return False
            except Exception:  # a bug must not kill the writer, nor be retried forever
                store._in_batch = 0
                self.gids.clear()
                self.seqs.clear()
                self._rollback()
                store.errors += 1
                store.dropped += len(batch)
                log.exception("storage write failed unexpectedly; dropped the batch", extra=kv(writes=len(batch)))
                continue
            store._in_batch = 0
            store.writes += len(batch)
            for op in batch:
                if op[0] == "attest" and not op[4].done():
                    op[4].set_result(True)
        return True

    def _rollback(self) -> None:
        if self.db is None:
            return
        try:
            self.db.rollback()
        except sqlite3.Error:
            self.close()

    def write(self, batch: list[tuple[Any, ...]]) -> None:
        db = self.db
        assert db is not None
        with db:  # one transaction; rolls back on an exception
            db.execute("BEGIN IMMEDIATE")
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

    def op_attest(self, db: sqlite3.Connection, tracker: str, gate: str, att: Attestation, done: Any) -> None:
        gid = self.gid(db, tracker, gate)
        db.execute("INSERT INTO attestations (gid, at, value, note, by) VALUES (?, ?, ?, ?, ?)",
                   (gid, att.at, att.value, att.note, att.by))

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
        # Coarsen in one pass, as GateState.compact does: each bucket moves to the size its age calls for.
        whens = " ".join(f"WHEN start > :now - {limit} THEN start - start % {size}"
                         for limit, size in TIERS if limit is not None)
        target = f"CASE {whens} ELSE start - start % {TIERS[-1][1]} END"
        moved = f"SELECT gid, start, {target} AS target, passed, total FROM buckets WHERE start <= :now - {TIERS[0][0]}"
        # Through a temp table: a bucket can be both merged away and merged into.
        db.execute("DROP TABLE IF EXISTS temp.merged")
        db.execute("CREATE TEMP TABLE merged AS "
                   "SELECT gid, target AS start, sum(passed) AS passed, sum(total) AS total "
                   f"FROM ({moved}) WHERE target != start GROUP BY gid, target", {"now": now})
        db.execute(f"DELETE FROM buckets WHERE start <= :now - {TIERS[0][0]} AND start != ({target})", {"now": now})
        db.execute("INSERT INTO buckets (gid, start, passed, total) SELECT gid, start, passed, total FROM temp.merged "
                   "WHERE true ON CONFLICT (gid, start) DO UPDATE SET passed = passed + excluded.passed, "
                   "total = total + excluded.total")
        db.execute("DROP TABLE temp.merged")
        # Trackers no config names keep their buckets until their gates' grace period ends.
        for tracker, keep in self.store._keep.items():
            db.execute("DELETE FROM buckets WHERE start < ? AND gid IN (SELECT gid FROM gates WHERE tracker = ?)",
                       (now - keep, tracker))
        expired = [r[0] for r in db.execute("SELECT gid FROM gates WHERE unseen_since < ?", (now - GRACE,))]
        for table in ("history", "buckets", "attestations", "gates"):
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


def _decode(texts: Iterable[str | None]) -> list[dict[str, float]]:
    """Many stored measurement objects at once: one JSON parse is far quicker than one per row."""
    return json.loads("[" + ",".join(t or "{}" for t in texts) + "]")


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def _check(db: sqlite3.Connection) -> str | None:
    """None for a healthy file, else what is wrong."""
    rows = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        return "; ".join(str(r) for r in rows[:3])
    return None


def _schema_version(db: sqlite3.Connection) -> int | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row else None


def _ensure_schema(db: sqlite3.Connection) -> None:
    """WAL mode and our tables; refuse a file written by a newer version."""
    version = _schema_version(db)
    if version is not None and version != SCHEMA_VERSION:
        raise StorageError(f"state file has schema version {version}, this exporter writes {SCHEMA_VERSION}")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    # NORMAL in WAL mode: a crash of the process (kill -9) loses no commit; only a power cut may lose the last ones.
    db.execute("PRAGMA synchronous = NORMAL")
    if version is None:
        db.executescript(_SCHEMA)
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    if mode != "wal":
        log.warning("state file is not in WAL mode", extra=kv(mode=mode))
