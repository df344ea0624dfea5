"""Durable state in one SQLite file: last outcomes, bounded history, uptime buckets, attestations.

The event loop only appends to a queue; one writer thread (exporter.state.writer) commits the queue
in batches (one transaction per batch). A storage fault is logged and counted, and the exporter keeps
serving from memory; the writer retries with backoff and catches up when the disk recovers. This
module is the event-loop side: opening (and what to do with a corrupt or foreign file), queueing,
reads, and the storage self-metrics as a prometheus_client collector.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from exporter.log import kv
from exporter.model import rfc3339
from exporter.state import evidence as pushes
from exporter.state import restore as restoring
from exporter.state.evidence import Push
from exporter.state.memory import State
from exporter.state.opening import Precheck, checked_connection, read_only_connection
from exporter.state.schema import READABLE, SCHEMA_VERSION, ForeignFile, StorageError, ensure_schema, schema_version
from exporter.state.selfmetrics import storage_families
from exporter.state.writer import GRACE, MAX_QUEUE, Op, Writer, future_of

if TYPE_CHECKING:
    from exporter.config.model import Config
    from exporter.model import Result

__all__ = ["GRACE", "SCHEMA_VERSION", "Attestation", "ForeignFile", "History", "Push", "StorageError", "Store",
           "open_store", "retention"]

log = logging.getLogger("qualitygate.storage")

DEFAULT_PATH = "data/qualitygate.db"
RETENTION_MARGIN = 2 * 86400.0  # uptime buckets kept beyond the longest window (daily buckets straddle it)
ATTESTATIONS_SHOWN = 20  # per gate, in memory and in /api/gates/{id}


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

    def evidence(self, gate_id: str) -> tuple[Push, ...]:
        """The pushes that decide a push-sourced gate, newest first (see exporter.state.evidence)."""
        return self._store.evidence(self._tracker, gate_id)


def open_store(path: str, read_only: bool = False, move_corrupt_aside: bool = True,
               early: Precheck | None = None) -> Store:
    """Open (or create) the state file; a corrupt file is renamed aside, never overwritten. `early`: the
    integrity check already started for this path (serve starts it before loading the config)."""
    store = Store(path, read_only)
    store._open(move_corrupt_aside, early)
    return store


class Store:
    """The state file. Public methods run on the event loop; the writer thread owns all writes."""

    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        self.up = True
        self.errors = 0  # failed transactions, failed opens, rows that cannot be stored, writer crashes
        self.writes = 0  # queued writes committed
        self.dropped = 0  # queued writes given up on
        self._queue: collections.deque[Op] = collections.deque()
        self._pending = 0  # queued or in the writer's batch, not yet answered (under _idle)
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._attest: dict[tuple[str, str], tuple[Attestation, ...]] = {}  # newest first
        self._attest_lock = threading.Lock()
        self._pushes: dict[tuple[str, str], tuple[Push, ...]] = {}  # deciding pushes, newest first
        self._keep: dict[str, float] = {}
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self._last_error_log = 0.0
        self._defer_histories, self.histories_pending = False, 0
        # While held, deferred histories wait for release_histories(): serve holds them until /-/ready, because
        # their thread's Python work shares the GIL with the start-up still to come (0.6-1.2 s of 10,000 gates).
        self.histories_held = False
        self._held: list[restoring.Histories] = []
        self._prefetched: restoring.Prefetched | None = None  # read ahead at start-up (opening.Precheck)

    @property
    def defer_histories(self) -> bool:
        """True while starting: restore() leaves histories to threads (and may take states read ahead)."""
        return self._defer_histories

    @defer_histories.setter
    def defer_histories(self, on: bool) -> None:
        self._defer_histories = on
        if not on:
            self._prefetched = None  # start-up is over: what no config took is not kept

    # --- opening ----------------------------------------------------------------------------

    def _open(self, move_corrupt_aside: bool, early: Precheck | None = None) -> None:
        if self.read_only:
            self._reader = read_only_connection(self.path)
            try:
                self._load_attestations()
                self._load_pushes()
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read state file {self.path}: {exc}") from None
            return
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._reader = checked_connection(self.path, move_corrupt_aside, early)
            if early is not None and early.verified(self.path):
                self._prefetched, early.stored = early.stored, None
        except (sqlite3.Error, OSError) as exc:
            self._fault("cannot open the state file; keeping state in memory only", exc)
            self._reader = None
        if self._reader is not None:
            try:
                ensure_schema(self._reader, self.path)
            except ForeignFile:
                self._reader.close()
                self._reader = None
                raise
            except (sqlite3.Error, StorageError) as exc:
                # A read-only file still restores; a file of another schema version is left alone.
                self._fault("cannot prepare the state file for writing; keeping state in memory", exc)
                if schema_version(self._reader) not in READABLE:
                    self._reader.close()
                    self._reader = None
        if self._reader is not None:
            self._load_attestations()
            self._load_pushes()
        self._thread = threading.Thread(target=Writer(self).run, name="qualitygate-storage", daemon=True)
        self._thread.start()

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

    async def add_push(self, tracker: str, gate_id: str, push: Push) -> None:
        """Store an accepted push; returns once it is committed (StorageError when it cannot be)."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()
        if self.read_only:
            raise StorageError("the state file is open read-only")

        def stored(f: concurrent.futures.Future[bool]) -> None:
            # Kept in memory by the writer thread once committed, whether or not this caller still waits.
            if f.exception() is None:
                self._remember_push(tracker, gate_id, push)

        done.add_done_callback(stored)
        self._put(("push", tracker, gate_id, push, done))
        await asyncio.wrap_future(done)

    def evidence(self, tracker: str, gate_id: str) -> tuple[Push, ...]:
        """The pushes that decide a gate, newest first: the latest that counts and the rest of its run."""
        return self._pushes.get((tracker, gate_id), ())

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
            return restoring.pass_ratio(self._reader, tracker, gate_id, now - window)

    def restore(self, tracker: str, state: State, gate_ids: Iterable[str] | None = None) -> int:
        """Fill stored gates' states (only those named, when given); returns how many were restored."""
        if self._reader is None:
            return 0
        self.flush(timeout=5.0)
        wanted, t0 = (None if gate_ids is None else set(gate_ids)), time.monotonic()
        try:
            with self._reader_lock:
                ahead = None
                if self._prefetched is not None and self.defer_histories:  # start-up
                    ahead = self._prefetched.take(self._reader, tracker, wanted)
                got, later = ahead or restoring.gate_states(self._reader, tracker, wanted,
                                                            histories=not self.defer_histories)
        except Exception as exc:  # rows are checked one by one; this is the file failing as a whole
            self._fault("cannot read stored state; those gates start empty", exc)
            log.debug("restore failed", exc_info=True)
            return 0
        state.gates.update(got)
        if got:
            log.info("restored stored state", extra=kv(tracker=tracker, gates=len(got), seconds=time.monotonic() - t0))
        if later is not None:  # start-up: histories follow in a thread, /-/ready does not wait for them
            if self.histories_held:
                self._held.append(later)
            else:
                later.start(self)
        return len(got)

    def release_histories(self) -> None:
        """Start loading the histories held back so far (and those of later restores at once)."""
        self.histories_held = False
        held, self._held = self._held, []
        for later in held:
            later.start(self)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is committed and answered (or the writer gave up for now)."""
        if self._thread is None:
            return True
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._pending and self.up and not self._stopping and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
            return not self._pending

    @property
    def pending(self) -> int:
        """Writes queued or in the writer's batch and not yet answered."""
        return self._pending

    @property
    def last_error(self) -> str:
        """The last storage error, for messages."""
        return self._last_error

    def is_up(self) -> bool:
        """Writing the state file; False while degraded to memory, or when the writer thread is gone."""
        alive = self._thread is None or self._thread.is_alive() or self._stopping
        return self.up and alive

    def collect(self) -> Iterator[Metric]:
        """The storage self-metrics, fresh at every scrape (a prometheus_client Collector)."""
        return storage_families(self)

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

    # --- shared with the writer thread -----------------------------------------------------

    def _put(self, op: Op) -> None:
        with self._idle:
            if len(self._queue) >= MAX_QUEUE:
                self._drop(1)
            self._queue.append(op)
            self._pending += 1
        if future_of(op) is not None:
            self._wake.set()  # someone awaits this one: do not wait for the next tick

    def _drop(self, n: int) -> None:
        """Give up on the n oldest queued writes (their futures fail)."""
        with self._idle:
            for _ in range(n):
                try:
                    op = self._queue.popleft()
                except IndexError:  # the writer took the rest meanwhile
                    break
                self.dropped += 1
                self._pending -= 1
                done = future_of(op)
                if done is not None and not done.done():
                    done.set_exception(StorageError("storage queue overflowed"))
            self._idle.notify_all()

    def _done(self, n: int) -> None:
        """The writer answered n writes: flush() may now see them done."""
        with self._idle:
            self._pending -= n
            self._idle.notify_all()

    def _remember(self, tracker: str, gate_id: str, att: Attestation) -> None:
        with self._attest_lock:
            old = self._attest.get((tracker, gate_id), ())
            if att not in old:
                merged = sorted((att, *old), key=lambda a: a.at, reverse=True)
                self._attest[(tracker, gate_id)] = tuple(merged[:ATTESTATIONS_SHOWN])

    def _remember_push(self, tracker: str, gate_id: str, push: Push) -> None:
        if not push.counts:
            return
        with self._attest_lock:
            old = self._pushes.get((tracker, gate_id), ())
            same_run = push.run_id != "" and bool(old) and old[0].run_id == push.run_id
            self._pushes[(tracker, gate_id)] = (push, *old) if same_run else (push,)

    def _load_pushes(self) -> None:
        assert self._reader is not None
        got, bad = pushes.deciding(self._reader)
        with self._attest_lock:
            self._pushes = got
        if bad:
            log.warning("stored pushes cannot be read; left them out", extra=kv(rows=bad))

    def _load_attestations(self, db: sqlite3.Connection | None = None) -> None:
        db = db or self._reader
        assert db is not None
        rows = db.execute(
            "SELECT g.tracker, g.gate, a.value, a.at, a.by, a.note FROM ("
            "  SELECT *, row_number() OVER (PARTITION BY gid ORDER BY at DESC, id DESC) AS rn FROM attestations"
            ") a JOIN gates g ON g.gid = a.gid WHERE a.rn <= ? ORDER BY a.at DESC",
            (ATTESTATIONS_SHOWN,)).fetchall()
        skipped = 0
        for tracker, gate, value, at, by, note in rows:
            try:
                att = Attestation(restoring.number(value), restoring.number(at), restoring.text(by),
                                  restoring.text(note))
            except restoring.BadRow as exc:
                skipped += 1
                if skipped == 1:
                    log.warning("stored attestation cannot be read; left it out",
                                extra=kv(tracker=str(tracker)[:100], gate=str(gate)[:100], err=str(exc)[:200]))
                continue
            self._remember(tracker, gate, att)
        if skipped > 1:
            log.warning("more stored attestations cannot be read; left them out", extra=kv(rows=skipped - 1))

    def _fault(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        was_up, self.up = self.up, False
        text = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        # One line per new problem, then a reminder a minute: a full disk must not flood the log.
        if was_up or text != self._last_error or now - self._last_error_log > 60:
            log.error(what, extra=kv(path=self.path, err=text, queued=len(self._queue), errors=self.errors))
            self._last_error, self._last_error_log = text, now
