"""Uptime buckets packed one BLOB per gate (schema version 2), and the v1 -> v2 migration.

A restart reads every gate's uptime buckets: at 10,000 gates of 30 days a million rows, which cost
1.1 s as rows (SQL, JSON text, per-value checks) and 0.2 s as one BLOB per gate. So the buckets live in
two tables that add up: `bucket_packs` (one BLOB per gate: the starts, passed and totals as little-endian
64-bit integers, three runs of equal length, starts ascending) and `buckets`, the rows the writer adds
to after each evaluation (the last minutes). The writer's compaction (every few minutes) coarsens and
prunes both and folds the rows into the packs, exactly as memory coarsens (GateState.compact).
"""

from __future__ import annotations

import array
import bisect
import itertools
import logging
import operator
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.log import kv
from exporter.state.memory import _TIERS as TIERS

log = logging.getLogger("qualitygate.storage")

TABLE = "CREATE TABLE IF NOT EXISTS bucket_packs (gid INTEGER PRIMARY KEY, data BLOB NOT NULL)"
NAME = "bucket_packs"
BIG_ENDIAN = sys.byteorder == "big"
SPAN = 256  # gids folded per step: the rows, packs and new packs of one step are all that is held at once
MAX_GID = 2**63 - 1
MAX_COUNT = 2**53  # evaluations one bucket may hold (a float is exact to here; sums of packs stay in int64)
YIELD_EVERY = 4  # gates folded between two offers of the GIL (about 0.1 ms of Python)


class BadPack(ValueError):
    """A pack that is not what the writer writes."""


def pack(buckets: Mapping[int, Sequence[int]]) -> bytes:
    """One gate's buckets as a pack (starts ascending)."""
    starts = sorted(buckets)
    return pack_columns((starts, [buckets[s][0] for s in starts], [buckets[s][1] for s in starts]))


def pack_columns(cols: tuple[list[int], list[int], list[int]]) -> bytes:
    """Sorted (starts, passed, totals) as a pack."""
    a = array.array("q", cols[0])
    a.extend(cols[1])
    a.extend(cols[2])
    if BIG_ENDIAN:
        a.byteswap()
    return a.tobytes()


def shaped(data: object) -> bytes:
    """The pack itself if it has a pack's shape (bytes, three runs of 64-bit integers), else BadPack."""
    if type(data) is not bytes or len(data) % 24:
        raise BadPack(f"uptime pack of {type(data).__name__} {len(data) if type(data) is bytes else ''} "
                      "is not three runs of 64-bit integers")
    return data


def problem(cols: Sequence[Sequence[int]]) -> str | None:
    """Why sorted columns are not a pack the writer writes, or None. Restore refuses what the compaction
    would not write: a pack restored but never compacted would keep its rows growing for good."""
    starts, passed, totals = cols
    if passed and (min(passed) < 0 or any(map(operator.gt, passed, totals))):
        return "uptime counts with more passed than run, or fewer than none"
    if totals and max(totals) > MAX_COUNT:
        return f"uptime counts over {MAX_COUNT:,} in one bucket"
    if not all(map(operator.lt, starts, starts[1:])):
        return "uptime buckets out of order or one bucket twice"
    return None


def unpack(data: object) -> tuple[list[int], list[int], list[int]]:
    """A pack's (starts, passed, totals), unchecked beyond its shape; BadPack when it is not a pack."""
    a = array.array("q")
    a.frombytes(shaped(data))
    if BIG_ENDIAN:
        a.byteswap()
    values, n = a.tolist(), len(a) // 3
    return values[:n], values[n:2 * n], values[2 * n:]


def has_packs(db: sqlite3.Connection) -> bool:
    """True when the file has the packs table (a version-1 file opened read-only has not)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (NAME,)).fetchone() is not None


Columns = tuple[list[int], list[int], list[int]]  # starts (ascending, unique), passed, totals


def coarsen(cols: Columns, now: float, keep: float | None) -> Columns:
    """GateState.compact on sorted columns: buckets older than keep dropped, each moved to the size its age
    calls for (bucket_start(start, now), inlined). Coarsening keeps the order, so equal targets are neighbours."""
    starts, passed, totals = cols
    (young, fine), (middle, mid), (_, coarse) = TIERS
    assert young is not None and middle is not None
    lo_fine, lo_mid = now - young, now - middle
    if keep is not None:
        first = bisect.bisect_left(starts, now - keep)
        if first:
            starts, passed, totals = starts[first:], passed[first:], totals[first:]
    # Each tier's targets in C (map): a compaction of 10,000 gates must not hold the GIL for long.
    a, b = bisect.bisect_right(starts, lo_mid), bisect.bisect_right(starts, lo_fine)
    targets = [*_floor(starts[:a], coarse), *_floor(starts[a:b], mid), *_floor(starts[b:], fine)]
    moved = list(map(operator.ne, targets, starts))
    if True not in moved:
        return starts, passed, totals
    first, end = moved.index(True), len(moved) - moved[::-1].index(True)
    # Only that stretch changes: buckets before it stay (one may be what the first moved one merges into),
    # and those after it stay apart (their targets are their starts, beyond every moved bucket's).
    lo = bisect.bisect_left(starts, targets[first], 0, first)
    out_s, out_p, out_t = starts[:lo], passed[:lo], totals[:lo]
    for target, p, t in zip(targets[lo:end], passed[lo:end], totals[lo:end], strict=True):
        if len(out_s) > lo and out_s[-1] == target:
            out_p[-1] += p
            out_t[-1] += t
        else:
            out_s.append(target)
            out_p.append(p)
            out_t.append(t)
    return out_s + starts[end:], out_p + passed[end:], out_t + totals[end:]


def _floor(starts: list[int], size: int) -> map[int]:
    return map(operator.sub, starts, map(operator.mod, starts, itertools.repeat(size)))


def _good(start: object, p: object, t: object) -> bool:
    return type(start) is int and type(p) is int and type(t) is int and 0 <= p <= t <= MAX_COUNT


def _add(cols: Columns, rows: list[tuple[int, int, int]]) -> None:
    """Add bucket rows to sorted columns, in place."""
    starts, passed, totals = cols
    for start, p, t in rows:
        i = bisect.bisect_left(starts, start)
        if i < len(starts) and starts[i] == start:
            passed[i] += p
            totals[i] += t
        else:
            starts.insert(i, start)
            passed.insert(i, p)
            totals.insert(i, t)


def fold(db: sqlite3.Connection, now: float | None, keep: Mapping[str, float],
         reported: set[Any] | None = None) -> int:
    """Fold the bucket rows into the packs (in the caller's transaction); with `now`, also coarsen and prune
    (keep: seconds per tracker; trackers not in it are only coarsened). Without `now` (the migration) the
    buckets stay exactly as they are. A gate with a row or a pack that is not ours is left as it is (restore
    says so); so is one whose pack cannot be built (counts beyond 64 bits), logged once per gate (`reported`
    holds the gates already logged). Returns how many packs were written.

    The gates go SPAN gids at a time, each step's statements run before the next step reads: at 10,000
    gates holding every gate's rows, pack and new pack at once cost ~9 MB of Python objects, and the
    allocator kept most of it (RSS +7 MB at the first compaction). Still one transaction: the caller's."""
    written, lo = 0, -MAX_GID - 1
    seen: set[Any] = set() if reported is None else reported
    while True:
        (first,) = db.execute("SELECT min(g) FROM (SELECT min(gid) AS g FROM buckets WHERE gid >= ?1 "
                              "UNION ALL SELECT min(gid) FROM bucket_packs WHERE gid >= ?1)", (lo,)).fetchone()
        if type(first) is not int:  # no gid left (or only gids that are not integers: not ours)
            return written
        hi = min(first + SPAN - 1, MAX_GID)
        written += _fold_span(db, first, hi, now, keep, seen)
        if hi == MAX_GID:
            return written
        lo = hi + 1


def _fold_span(db: sqlite3.Connection, lo: int, hi: int, now: float | None, keep: Mapping[str, float],
               reported: set[Any]) -> int:
    """fold() for the gids lo..hi."""
    span = (lo, hi)
    rows: dict[int, list[tuple[Any, Any, Any]]] = defaultdict(list)
    for gid, start, p, t in db.execute("SELECT gid, start, passed, total FROM buckets WHERE gid BETWEEN ? AND ?",
                                       span):
        rows[gid].append((start, p, t))
    packs = dict(db.execute("SELECT gid, data FROM bucket_packs WHERE gid BETWEEN ? AND ?", span).fetchall())
    trackers = dict(db.execute("SELECT gid, tracker FROM gates WHERE gid BETWEEN ? AND ?", span).fetchall()
                    ) if now is not None else {}
    writes, empties, folded = [], [], []
    for n, gid in enumerate(packs.keys() | rows.keys()):
        if n % YIELD_EVERY == YIELD_EVERY - 1:
            time.sleep(0)  # let the event loop have the GIL now and then, not in 5 ms switch intervals only
        try:
            cols = unpack(packs[gid]) if gid in packs else ([], [], [])
        except BadPack:
            continue
        added = rows.get(gid, [])
        if type(gid) is not int or problem(cols) is not None or not all(_good(*r) for r in added):
            continue
        try:
            write = _folded(cols, added, now, keep.get(trackers.get(gid, "")), gid in packs)
        except (ArithmeticError, ValueError, TypeError) as exc:  # counts beyond 64 bits: this gate only
            if gid not in reported:
                reported.add(gid)
                log.warning("uptime buckets of a gate cannot be compacted; left as they are",
                            extra=kv(gid=gid, tracker=trackers.get(gid, ""), err=f"{type(exc).__name__}: {exc}"[:200]))
            continue
        if added:
            folded.append((gid,))
        if write:
            writes.append((gid, write))
        elif write is not None:
            empties.append((gid,))
    db.executemany("DELETE FROM buckets WHERE gid = ?", folded)
    db.executemany("DELETE FROM bucket_packs WHERE gid = ?", empties)
    db.executemany("INSERT OR REPLACE INTO bucket_packs (gid, data) VALUES (?, ?)", writes)
    return len(writes)


def _folded(cols: Columns, added: list[tuple[int, int, int]], now: float | None, keep: float | None,
            stored: bool) -> bytes | None:
    """One gate's new pack; empty: delete the stored one; None: nothing to write."""
    before = len(cols[0])
    _add(cols, added)
    if now is not None:
        coarse = coarsen(cols, now, keep)
        changed = bool(added) or coarse[0] != cols[0]
        cols = coarse
    else:
        changed = bool(added)
    if not cols[0]:
        return b"" if stored else None
    if changed or len(cols[0]) != before:
        return pack_columns(cols)  # an unchanged pack is not written again (10,000 gates: 24 MB every compaction)
    return None


def migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Version 1 -> 2 (in the caller's transaction): the packs table, every gate's bucket rows packed as they are."""
    db.execute(TABLE)
    rows = db.execute("SELECT count(*) FROM buckets").fetchone()[0]
    written = fold(db, None, {})
    left = db.execute("SELECT count(*) FROM buckets").fetchone()[0]
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    log.info("state file migrated from schema version 1 to 2 (uptime buckets packed per gate)",
             extra=kv(bucket_rows=rows, packs=written, rows_left=left))
