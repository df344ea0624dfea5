"""Reading stored gate states back into memory, row by row where a row is not what we wrote.

SQLite keeps whatever a column is given (a hand edit, another program, a half-written disk), so every
row is checked before it becomes a GateState: a bad history row is left out, a bad gate row leaves
that gate empty, each with a log line, and the rest restores as usual.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import operator
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from exporter.config.yamlload import gc_paused
from exporter.log import kv
from exporter.model import ERROR, FAIL, PASS, Result
from exporter.state import packs
from exporter.state.buckets import Buckets
from exporter.state.memory import GateState

log = logging.getLogger("qualitygate.storage")

OUTCOMES = frozenset({PASS, FAIL, ERROR})
BULK_ABOVE = 200  # gates wanted beyond which whole-tracker queries beat queries by gid
MAX_COUNT = packs.MAX_COUNT
SKIPS_LOGGED = 5  # skipped rows logged one by one per restore; the rest in one summary line


class BadRow(ValueError):
    """A stored row that is not what the writer writes."""


def number(x: object) -> float:
    """A stored REAL or INTEGER; anything else (text, blob, NULL, bool) is a bad row."""
    if type(x) is float:
        return x
    if type(x) is int:
        try:
            return float(x)
        except OverflowError:
            pass
    raise BadRow(f"{x!r:.40} is not a number")


def text(x: object) -> str:
    if type(x) is not str:
        raise BadRow(f"{x!r:.40} is not text")
    return x


def measurements(x: object) -> dict[str, float]:
    if type(x) is not dict or not all(type(k) is str and type(v) in (int, float) for k, v in x.items()):
        raise BadRow(f"measurements {json.dumps(x, default=str)[:60]} are not an object of numbers")
    return x


def decode(texts: list[object]) -> list[object]:
    """Many stored JSON texts at once (one parse is far quicker than one per row); a bad one becomes BadRow."""
    if all(type(t) is str for t in texts):
        try:
            got = json.loads("[" + ",".join(texts) + "]")  # type: ignore[arg-type]
        except (ValueError, RecursionError):
            got = None  # one bad text: each on its own
        if type(got) is list and len(got) == len(texts):  # a text like '1],[2' changes the count
            return got
    out: list[object] = []
    for t in texts:
        try:
            out.append(json.loads(t) if type(t) is str else BadRow(f"{t!r:.40} is not JSON text"))
        except (ValueError, RecursionError) as exc:
            out.append(BadRow(f"not JSON: {exc}"))
    return out


class Skips:
    """Rows left out of one restore, logged a few at a time."""

    def __init__(self, tracker: str):
        self.tracker, self.count = tracker, 0

    def add(self, what: str, gate: object, exc: Exception) -> None:
        self.count += 1
        if self.count <= SKIPS_LOGGED:
            log.warning(f"stored {what} cannot be read; left it out", extra=kv(tracker=self.tracker,
                        gate=str(gate)[:100], err=str(exc)[:200]))

    def done(self) -> None:
        if self.count > SKIPS_LOGGED:
            log.warning("more stored rows cannot be read; left them out",
                        extra=kv(tracker=self.tracker, rows=self.count - SKIPS_LOGGED))


class Reader(Protocol):
    """What Histories.load_in_thread uses of the Store."""

    _reader: sqlite3.Connection | None
    _reader_lock: threading.Lock
    histories_pending: int

    def _fault(self, what: str, exc: BaseException) -> None: ...


class Histories:
    """Stored histories not read yet: what gate_states(..., histories=False) leaves for later.

    `load()` reads them (in a thread: it takes seconds at 10,000 gates) and attaches each gate's as
    its ring's `older` entries, one attribute store per gate, while the loop goes on appending new
    results. Only rows written before the restore are read: later ones are in memory already.
    """

    def __init__(self, tracker: str, gates: dict[int, tuple[str, GateState]], seqs: dict[int, int],
                 where: str, params: tuple[object, ...]):
        self.tracker, self.gates, self.seqs, self.where, self.params = tracker, gates, seqs, where, params

    def start(self, store: Reader) -> None:
        """load() in a thread of its own."""
        store.histories_pending += 1
        threading.Thread(target=self.load_in_thread, args=(store,), name="restore-histories", daemon=True).start()

    def load_in_thread(self, store: Reader) -> None:
        """load() from the store's reader, logged; a failure leaves the histories to start from now."""
        t0 = time.monotonic()
        try:
            with store._reader_lock:
                rows = self.load(store._reader) if store._reader is not None else 0
            log.info("restored stored histories", extra=kv(tracker=self.tracker, rows=rows,
                                                           seconds=round(time.monotonic() - t0, 3)))
        except Exception as exc:  # noqa: BLE001 - the gates run on; their histories start from now
            store._fault("cannot read stored histories; they start from now", exc)
        finally:
            store.histories_pending -= 1

    def load(self, db: sqlite3.Connection) -> int:
        """Read and attach the histories; returns how many rows were attached."""
        skips = Skips(self.tracker)
        got = history_rows(db, self.gates, self.where, self.params, skips, self.seqs)
        for gid, results in got.items():
            self.gates[gid][1].history.older = tuple(results)
        skips.done()
        return sum(len(r) for r in got.values())


def history_rows(db: sqlite3.Connection, gates: dict[int, tuple[str, GateState]], where: str,
                 params: tuple[object, ...],
                 skips: Skips, seqs: dict[int, int] | None = None) -> dict[int, list[Result]]:
    """Stored history rows as Results per gid, oldest first (only rows up to `seqs[gid]`, when given)."""
    rows = db.execute("SELECT gid, started, duration, outcome, measurements, message, seq FROM history "
                      f"WHERE {where} ORDER BY gid, seq", params).fetchall()
    out: dict[int, list[Result]] = {}
    for (gid, started, duration, outcome, _, message, seq), meas in zip(
            rows, decode([r[4] for r in rows]), strict=True):
        entry = gates.get(gid)
        if entry is None or (seqs is not None and seq > seqs.get(gid, 0)):
            continue
        try:
            if outcome not in OUTCOMES:
                raise BadRow(f"outcome {outcome!r:.40}")
            if isinstance(meas, BadRow):
                raise meas
            out.setdefault(gid, []).append(Result(entry[0], outcome, number(started), number(duration),
                                                  measurements(meas), text(message)))
        except Exception as exc:  # noqa: BLE001  # a huge integer, an outcome of another version...
            skips.add("history row", entry[0], exc)
    return out


def gate_states(db: sqlite3.Connection, tracker: str, wanted: set[str] | None,
                histories: bool = True) -> tuple[dict[str, GateState], Histories | None]:
    """The stored states of a tracker's gates (only those named, when given). With histories=False the
    evaluation histories are left out, and returned as a Histories to load later (what /-/ready need not wait for)."""
    # No cyclic GC meanwhile: each collection walked every object made so far again (10,000 gates of 30 days:
    # 2.1 s -> 1.4 s while the uptime buckets were a million small lists; they are flat arrays now).
    with gc_paused(), snapshot(db):
        return _gate_states(db, tracker, wanted, histories)


class Prefetched:
    """Every tracker's stored state read ahead (by opening.Precheck, while serve's config loads), to be taken
    by Store.restore once the config names the gates, if the file has not changed meanwhile (`token`)."""

    def __init__(self, db: sqlite3.Connection):
        with snapshot(db):
            self.token = token(db)
            trackers = [r[0] for r in db.execute("SELECT DISTINCT tracker FROM gates").fetchall()]
            self.trackers = {t: gate_states(db, t, None, histories=False) for t in trackers if type(t) is str}

    def take(self, db: sqlite3.Connection, tracker: str,
             wanted: set[str] | None) -> tuple[dict[str, GateState], Histories | None] | None:
        """The tracker's states (only those named, when given) if the file is as it was read, else None."""
        got = self.trackers.pop(tracker, None)
        if got is None or token(db) != self.token:
            return None
        states, later = got
        if wanted is not None:
            states = {g: st for g, st in states.items() if g in wanted}
            if later is not None:
                later.gates = {gid: e for gid, e in later.gates.items() if e[0] in wanted}
        return states, later


def token(db: sqlite3.Connection) -> tuple[object, ...]:
    """What any write of evaluations, imported counts or a compaction changes in the file."""
    row = db.execute("SELECT (SELECT count(*) FROM gates), (SELECT max(gid) FROM gates), "
                     "(SELECT total(seq) FROM gates), (SELECT total(n_pass + n_fail + n_error) FROM gates), "
                     "(SELECT count(*) FROM buckets), "
                     "(SELECT total(total) FROM buckets)").fetchone()
    if packs.has_packs(db):
        row += db.execute("SELECT count(*), total(length(data)) FROM bucket_packs").fetchone()
    return tuple(row)


@contextlib.contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """The reads inside see one state of the file: the writer's compaction moves rows into packs in between."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def pass_ratio(db: sqlite3.Connection, tracker: str, gate_id: str, since: float) -> tuple[int, int]:
    """(passed, total) stored for a gate in buckets starting at `since` or later (packs and rows)."""
    with snapshot(db):
        rows = db.execute("SELECT b.start, b.passed, b.total FROM buckets b JOIN gates g ON g.gid = b.gid "
                          "WHERE g.tracker = ? AND g.gate = ? AND b.start >= ?", (tracker, gate_id, since)).fetchall()
        try:  # each row checked as restore checks it: a hand-edited row must not make a ratio over 100 %
            recent = buckets([[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]])
        except BadRow:
            return 0, 0
        passed, total = sum(p for p, _ in recent.values()), sum(t for _, t in recent.values())
        if packs.has_packs(db):
            for (data,) in db.execute("SELECT p.data FROM bucket_packs p JOIN gates g ON g.gid = p.gid "
                                      "WHERE g.tracker = ? AND g.gate = ?", (tracker, gate_id)):
                try:
                    p, t = packed(data).since(since)
                except BadRow:
                    return 0, 0  # as restore: a pack that is not ours costs the gate its uptime counts
                passed += p
                total += t
    return passed, total


def _gate_states(db: sqlite3.Connection, tracker: str, wanted: set[str] | None,
                 histories: bool) -> tuple[dict[str, GateState], Histories | None]:
    skips = Skips(tracker)
    rows = db.execute("SELECT gid, gate, outcome, started, duration, measurements, message, last_pass, since, "
                      "n_pass, n_fail, n_error, seq FROM gates WHERE tracker = ?", (tracker,)).fetchall()
    if wanted is not None:
        rows = [r for r in rows if r[1] in wanted]
    gates: dict[int, tuple[str, GateState]] = {}
    seqs: dict[int, int] = {}
    for row, meas in zip(rows, decode([r[5] if r[5] is not None else "{}" for r in rows]), strict=True):
        try:
            gid, gate, outcome, started, duration, _, message, last_pass, since, np, nf, ne, seq = row
            gates[gid] = (text(gate), gate_state(gate, outcome, started, duration, meas, message, last_pass, since,
                                                 (np, nf, ne)))
            seqs[gid] = seq if type(seq) is int else 0
        except Exception as exc:  # noqa: BLE001  # whatever a row holds, it costs that gate its state, never the start
            skips.add("gate state", row[1], exc)
    if not gates:
        skips.done()
        return {}, None
    # Whole-tracker queries when most gates are wanted, queries by gid otherwise. Buckets come
    # grouped per gate as three JSON integer arrays: one parse instead of a million row tuples.
    params: tuple[object, ...]
    if wanted is None or len(gates) > BULK_ABOVE:
        where, params = "gid IN (SELECT gid FROM gates WHERE tracker = ?)", (tracker,)
    else:
        where, params = f"gid IN ({','.join('?' * len(gates))})", tuple(gates)
    later = None
    if histories:
        for gid, results in history_rows(db, gates, where, params, skips).items():
            ring = gates[gid][1].history
            for r in results:
                ring.append(r)
    else:
        later = Histories(tracker, gates, seqs, where, params)
    bad: set[int] = set()
    if packs.has_packs(db):
        for gid, data in db.execute(f"SELECT gid, data FROM bucket_packs WHERE {where}", params).fetchall():
            entry = gates.get(gid)
            if entry is None:
                continue
            try:
                entry[1].buckets = packed(data)
            except Exception as exc:  # noqa: BLE001  # as below
                bad.add(gid)
                skips.add("uptime counts", entry[0], exc)
    bucket_rows = db.execute("SELECT gid, '[[' || group_concat(start) || '],[' || group_concat(passed) || '],[' "
                             f"|| group_concat(total) || ']]' FROM buckets WHERE {where} GROUP BY gid",
                             params).fetchall()
    for (gid, _), columns in zip(bucket_rows, decode([r[1] for r in bucket_rows]), strict=True):
        entry = gates.get(gid)
        if entry is None or gid in bad:
            continue
        try:
            recent = buckets(columns)
        except Exception as exc:  # noqa: BLE001  # as above
            entry[1].buckets = Buckets()  # not the packed part alone: a ratio of half the counts would be wrong
            skips.add("uptime counts", entry[0], exc)
            continue
        held = entry[1].buckets
        if not held:
            entry[1].buckets = Buckets.of(recent)
            continue
        for start in sorted(recent):  # rows since the last compaction add to the packed counts
            p, t = recent[start]
            held.add(start, p, t)
    skips.done()
    return dict(gates.values()), later


def gate_state(gate: str, outcome: object, started: object, duration: object, meas: object, message: object,
               last_pass: object, since: object, counts: Iterable[object]) -> GateState:
    """One gates row as a GateState, or BadRow."""
    st = GateState()
    if outcome is not None:
        if outcome not in OUTCOMES:
            raise BadRow(f"outcome {outcome!r:.40}")
        if isinstance(meas, BadRow):
            raise meas
        st.result = Result(gate, text(outcome), number(started), number(duration), measurements(meas),
                           "" if message is None else text(message))
    st.last_pass = None if last_pass is None else number(last_pass)
    st.since = None if since is None else number(since)
    np, nf, ne = (int(number(c)) for c in counts)
    st.counts = {PASS: np, FAIL: nf, ERROR: ne}
    return st


def buckets(columns: object) -> dict[int, list[int]]:
    """One gate's [[starts], [passed], [totals]] as GateState.buckets."""
    if isinstance(columns, BadRow):
        raise columns
    if type(columns) is not list or len(columns) != 3:
        raise BadRow("uptime counts are not three lists")
    starts, passed, totals = columns
    # Checked in bulk (map and zip run in C): a million buckets at 10,000 gates took 1.4 s one by one.
    if type(starts) is list and type(passed) is list and type(totals) is list \
            and len(starts) == len(passed) == len(totals) \
            and set(map(type, itertools.chain(starts, passed, totals))) <= {int} \
            and (not passed or (min(passed) >= 0 and max(totals) <= MAX_COUNT)) \
            and not any(map(operator.gt, passed, totals)):
        return dict(zip(starts, map(list, zip(passed, totals, strict=True)), strict=True))
    for start, p, total in zip(starts, passed, totals, strict=True):  # say which one is bad
        if type(start) is not int or type(p) is not int or type(total) is not int \
                or not 0 <= p <= total <= MAX_COUNT:
            raise BadRow(f"uptime count {start!r:.20}: {p!r:.20}/{total!r:.20}")
    raise BadRow("uptime counts are not three lists of integers")


def packed(data: object) -> Buckets:
    """One gate's pack (exporter.state.packs) as GateState.buckets; BadRow when it is not what the writer writes."""
    try:
        held = Buckets.from_pack(packs.shaped(data))  # the columns straight from the bytes: no list or dict
    except packs.BadPack as exc:
        raise BadRow(str(exc)) from None
    why = packs.problem(held.columns())  # as strictly as the compaction checks it
    if why is not None:
        raise BadRow(why)
    return held
