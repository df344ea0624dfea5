"""The packed history ring gives back exactly the results a plain list of the last N would hold."""

from __future__ import annotations

import random

from exporter.model import Result
from exporter.state.ring import MAX_NAMES, ResultRing

KINDS = [(), ("a",), ("a", "b"), ("b", "c"), ("status", "response_time", "value")]


def test_ring_matches_a_list_of_the_last_n_results():
    rnd = random.Random(1)
    for _ in range(300):
        size = rnd.randint(1, 9)
        ring, ref = ResultRing(size), []
        for k in range(rnd.randint(0, 30)):
            names = rnd.choice(KINDS)  # an error outcome has no measurements; kinds add names over time
            r = Result("g", rnd.choice(["pass", "fail", "error"]), 1e9 + k, 0.5 * k,
                       {n: rnd.random() for n in names}, rnd.choice(["", "", "expected 200, got 503"]))
            ring.append(r)
            ref = [*ref, r][-size:]
        assert list(ring) == ref
        assert list(reversed(ring)) == ref[::-1]
        assert len(ring) == len(ref)
        if ref:
            assert ring[-1] == ref[-1] and ring[0] == ref[0]


def test_restored_entries_come_first_until_the_ring_is_full_by_itself():
    ring = ResultRing(5)
    ring.older = tuple(Result("g", "pass", float(k), 0.0, {"v": 1.0}) for k in range(5))
    for k in range(3):
        ring.append(Result("g", "fail", 10.0 + k, 0.0, {"v": 2.0}, "down"))
    assert [r.started for r in ring] == [3.0, 4.0, 10.0, 11.0, 12.0]
    assert [r.started for r in reversed(ring)] == [12.0, 11.0, 10.0, 4.0, 3.0]
    for k in range(2):
        ring.append(Result("g", "pass", 20.0 + k, 0.0, {"v": 3.0}))
    assert [r.started for r in ring] == [10.0, 11.0, 12.0, 20.0, 21.0] and ring.older == ()


def test_a_gate_inventing_names_keeps_its_newest_entry_whole():
    ring = ResultRing(3)
    for k in range(MAX_NAMES + 5):
        ring.append(Result("g", "pass", float(k), 0.0, {f"m{k}": float(k)}))
    assert list(ring)[-1].measurements == {f"m{MAX_NAMES + 4}": float(MAX_NAMES + 4)}
    assert len(ring) == 3
