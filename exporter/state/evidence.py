"""Pushed evidence in the state file: every accepted push, and the ones that decide each gate.

Interface for the evidence endpoint (POST /api/gates/{id}/evidence):

    from exporter.state.evidence import Push, MAX_BODY_STORED

    push = Push.of(body, measurements={"value": 0.87}, counts=True, commit=sha, branch="main",
                   run_url=url, run_id="1234")           # sha256 and size of the body; run it in a thread
    await runtime.store.add_push(tracker, gate_id, push)  # (Push.of hashes the body: a thread for large ones)
    # returns once the row is committed (a 202 may be sent; it survives kill -9); raises StorageError
    # when it cannot be stored (read-only store, queue overflow, a value SQLite refuses). Wrap it in
    # asyncio.wait_for to bound the wait while the disk fails: a push that times out may still be
    # committed later (the client's retry then stores it twice, which judges the same).

    runtime.store.evidence(tracker, gate_id) -> tuple[Push, ...]
    # newest first: the latest push that counts, then the other counting pushes of its run_id (empty
    # run_id: that push alone). A junit gate sums them all; other kinds judge the first. Filled from
    # the file at open and kept current by add_push, so a restart judges what was last accepted.

`counts` says whether the push decides the gate (its branch is the gate's `branch`, or the gate
names none); pushes that do not count are kept too (the history of pull requests' judgements) and
pruned like attestations. The report body is stored only up to MAX_BODY_STORED, so a restart can
re-judge it; beyond that `body` is None and the stored measurements stand.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BODY_STORED = 1 << 20  # report bodies up to 1 MiB are kept in the file
PUSHES_KEPT = 100  # per gate on disk, beside the pushes that decide it now

TABLE_NAMES = ("pushes",)
TABLES = [
    """CREATE TABLE IF NOT EXISTS pushes (
        id INTEGER PRIMARY KEY,
        gid INTEGER NOT NULL,
        received_at REAL NOT NULL,
        commit_sha TEXT NOT NULL,
        branch TEXT NOT NULL,
        run_url TEXT NOT NULL,
        run_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        measurements TEXT NOT NULL,
        counts INTEGER NOT NULL,
        body BLOB)""",
    "CREATE INDEX IF NOT EXISTS pushes_gid_received ON pushes (gid, received_at)",
]


@dataclass(frozen=True)
class Push:
    """One accepted push of a CI report."""

    received_at: float  # Unix time the exporter accepted it
    sha256: str  # hex digest of the report as received
    size: int  # bytes
    measurements: Mapping[str, float]
    counts: bool  # decides the gate (its branch is the gate's, or the gate names none)
    commit: str = ""
    branch: str = ""
    run_url: str = ""
    run_id: str = ""
    body: bytes | None = field(default=None, compare=False, repr=False)  # the report, when <= MAX_BODY_STORED

    @classmethod
    def of(cls, report: bytes, *, measurements: Mapping[str, float], counts: bool, commit: str = "",
           branch: str = "", run_url: str = "", run_id: str = "", received_at: float | None = None) -> Push:
        """A push of this report body, received now (digest and size computed here)."""
        return cls(time.time() if received_at is None else received_at, hashlib.sha256(report).hexdigest(),
                   len(report), dict(measurements), counts, commit, branch, run_url, run_id,
                   report if len(report) <= MAX_BODY_STORED else None)

    def to_json(self) -> dict[str, Any]:
        """The fields the API's `evidence` object takes from a push."""
        return {"kind": "push", "at_seconds": self.received_at, "commit": self.commit, "branch": self.branch,
                "run_url": self.run_url, "run_id": self.run_id, "digest": f"sha256:{self.sha256}",
                "size": self.size, "counts": self.counts}


def insert(db: sqlite3.Connection, gid: int, push: Push) -> None:
    """Store one push (the writer thread, inside its transaction)."""
    kept = push.body if push.body is not None and len(push.body) <= MAX_BODY_STORED else None
    db.execute("INSERT INTO pushes (gid, received_at, commit_sha, branch, run_url, run_id, sha256, size, "
               "measurements, counts, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               (gid, push.received_at, push.commit, push.branch, push.run_url, push.run_id, push.sha256,
                push.size, json.dumps(dict(push.measurements), separators=(",", ":"), allow_nan=False),
                int(push.counts), kept))


# The latest counting push of each gate, and every counting push of its run (a non-empty run_id).
_DECIDING = """
WITH latest AS (
    SELECT gid, id, run_id FROM (
        SELECT gid, id, run_id, row_number() OVER (PARTITION BY gid ORDER BY received_at DESC, id DESC) AS rn
        FROM pushes WHERE counts = 1) WHERE rn = 1)
SELECT p.id FROM pushes p JOIN latest l ON p.gid = l.gid
WHERE p.id = l.id OR (p.counts = 1 AND l.run_id != '' AND p.run_id = l.run_id)
"""


def prune(db: sqlite3.Connection) -> None:
    """Keep each gate's newest PUSHES_KEPT pushes, and always the ones that decide it now."""
    db.execute(f"DELETE FROM pushes WHERE id IN (SELECT id FROM (SELECT id, row_number() OVER "
               f"(PARTITION BY gid ORDER BY received_at DESC, id DESC) AS rn FROM pushes) WHERE rn > ?) "
               f"AND id NOT IN ({_DECIDING})", (PUSHES_KEPT,))


def deciding(db: sqlite3.Connection) -> tuple[dict[tuple[str, str], tuple[Push, ...]], int]:
    """Every gate's deciding pushes, newest first, and how many rows could not be read."""
    rows = db.execute(
        "SELECT g.tracker, g.gate, p.received_at, p.sha256, p.size, p.measurements, p.counts, p.commit_sha, "
        f"p.branch, p.run_url, p.run_id, p.body FROM pushes p JOIN gates g ON g.gid = p.gid "
        f"WHERE p.id IN ({_DECIDING}) ORDER BY p.received_at DESC, p.id DESC").fetchall()
    out: dict[tuple[str, str], list[Push]] = {}
    bad = 0
    for tracker, gate, at, digest, size, meas, counts, commit, branch, run_url, run_id, body in rows:
        try:
            push = from_row(at, digest, size, meas, counts, commit, branch, run_url, run_id, body)
        except (ValueError, TypeError, RecursionError):
            bad += 1
            continue
        out.setdefault((tracker, gate), []).append(push)
    return {k: tuple(v) for k, v in out.items()}, bad


def from_row(at: object, digest: object, size: object, meas: object, counts: object, commit: object,
             branch: object, run_url: object, run_id: object, body: object) -> Push:
    """A stored row as a Push; ValueError when it is not what insert() writes."""
    texts = (digest, commit, branch, run_url, run_id)
    if type(at) not in (int, float) or type(size) is not int or not all(type(t) is str for t in texts):
        raise ValueError("push row of unexpected types")
    decoded = json.loads(meas) if type(meas) is str else None
    if type(decoded) is not dict or not all(type(v) in (int, float) for v in decoded.values()):
        raise ValueError("push measurements are not an object of numbers")
    if body is not None and type(body) is not bytes:
        raise ValueError("push body is not a blob")
    return Push(float(at), digest, size, {str(k): float(v) for k, v in decoded.items()},  # type: ignore[arg-type]
                bool(counts), commit, branch, run_url, run_id, body)  # type: ignore[arg-type]
