"""Writes state-v1.db (and state-v1.json, what version 1 restores from it) with the schema-version-1 code.

Run from a checkout of a version-1 commit (400420d), e.g.
    git worktree add /tmp/wt-v1 400420d
    PYTHONPATH=/tmp/wt-v1 .venv/bin/python tests/testdata/state/make_v1.py tests/testdata/state
The file is what that code's Store leaves: evaluations through record(), imported counts through
merge_buckets(), one compaction (5-minute, hourly and daily buckets), an attestation, and one gate whose
bucket row a hand edit broke (version 1 restores that gate without uptime counts).
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys

from exporter.model import Result
from exporter.state.memory import State
from exporter.state.schema import SCHEMA_VERSION
from exporter.state.store import Attestation, open_store

NOW = 1_800_000_000.0
WINDOWS = (3600, 7200, 86400, 3 * 86400, 10 * 86400, 30 * 86400)


def main(out: str) -> None:
    assert SCHEMA_VERSION == 1, "run this with the version-1 code on PYTHONPATH"
    path = os.path.join(out, "state-v1.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    store = open_store(path)
    for i in range(12 * 24 * 10):  # gate a: 10 days, every 5 minutes, every 9th fails
        store.record("t", Result("a", "fail" if i % 9 == 0 else "pass", NOW - 10 * 86400 + i * 300 + 7, 0.01,
                                 {"value": float(i)}, f"m{i}"))
    for i in range(40):  # gate b: the last 40 minutes only (5-minute buckets)
        store.record("t", Result("b", "pass" if i % 3 else "error", NOW - 2400 + i * 60, 0.0, {}, ""))
    store.merge_buckets("t", "c", {int(NOW - 20 * 86400) // 86400 * 86400: (900, 1000), int(NOW) // 300 * 300: (3, 4)})
    store.record("t", Result("x", "pass", NOW - 100, 0.0, {}, ""))
    store.attest("t", "m", Attestation(1.0, NOW - 50, "alice", "checked"))
    store.record("u", Result("a", "pass", NOW - 5000, 0.0, {}, ""))  # a second tracker, same gate id
    assert store.flush(30)
    store.maintain(NOW)
    assert store.flush(30)
    for i in range(3):  # evaluations after the compaction: rows a later compaction would fold
        store.record("t", Result("a", "pass", NOW + 10 + i, 0.0, {}, ""))
    assert store.flush(30)
    store.close_sync()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO buckets SELECT gid, 'x', 1, 1 FROM gates WHERE gate = 'x'")
    db.close()
    store = open_store(path)
    expected: dict[str, object] = {}
    for tracker in ("t", "u"):
        state = State()
        store.restore(tracker, state)
        expected[tracker] = {
            gid: {"buckets": sorted([s, p, t] for s, (p, t) in st.buckets.items()),
                  "ratios": [list(store.pass_ratio(tracker, gid, w, NOW)) for w in WINDOWS],
                  "counts": st.counts, "history": len(st.history)}
            for gid, st in sorted(state.gates.items())}
    store.close_sync()  # the writer's close checkpoints: the file alone holds everything
    assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    with open(os.path.join(out, "state-v1.json"), "w") as fh:
        json.dump({"now": NOW, "windows": WINDOWS, "trackers": expected}, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
