"""The packed history ring gives back exactly the results a plain list of the last N would hold."""

from __future__ import annotations

import math
import random

from exporter.model import Result
from exporter.state.ring import MAX_NAMES, ResultRing

KINDS = [(), ("a",), ("a", "b"), ("b", "c"), ("status", "response_time", "value")]


def measurements(rnd: random.Random, names: tuple[str, ...]) -> dict[str, float]:
    """Random values, often one name equal to an earlier one (a probe's `value` is its response time), and
    zeros of both signs (equal as floats, told apart in JSON)."""
    out: dict[str, float] = {}
    for n in names:
        pick = rnd.random()
        if out and pick < 0.5:
            out[n] = rnd.choice(list(out.values()))
        elif pick < 0.6:
            out[n] = rnd.choice([0.0, -0.0])
        else:
            out[n] = rnd.random()
    return out


def signs(results: list[Result]) -> list[list[tuple[str, float]]]:
    return [sorted((m, math.copysign(1.0, v)) for m, v in x.measurements.items()) for x in results]


def test_ring_matches_a_list_of_the_last_n_results():
    """Names that share a slot while equal keep every value and sign, whatever the sequence."""
    rnd = random.Random(1)
    for _ in range(400):
        size = rnd.randint(1, 9)
        ring, ref = ResultRing(size), []
        for k in range(rnd.randint(0, 40)):
            names = rnd.choice(KINDS)  # an error outcome has no measurements; kinds add names over time
            r = Result("g", rnd.choice(["pass", "fail", "error"]), 1e9 + k, 0.5 * k,
                       measurements(rnd, names), rnd.choice(["", "", "expected 200, got 503"]))
            ring.append(r)
            ref = [*ref, r][-size:]
            got = list(ring)
            assert got == ref
            assert signs(got) == signs(ref)
        assert list(reversed(ring)) == ref[::-1]
        assert len(ring) == len(ref)
        if ref:
            assert ring[-1] == ref[-1] and ring[0] == ref[0]


def test_a_probe_whose_value_is_another_measurement_stores_it_once():
    ring = ResultRing(50)
    for k in range(50):
        t = 0.01 * (k + 1)
        ring.append(Result("g", "pass", 1e9 + k, t, {"status": 200.0, "response_time": t, "value": t}))
    assert len(ring._nums) == 50 * 4, "started, duration, status and one slot for response_time and value"
    assert ring._words.itemsize == 1
    ring.append(Result("g", "pass", 2e9, 0.5, {"status": 200.0, "response_time": 0.5, "value": 7.0}))
    assert len(ring._nums) == 50 * 5, "once they differ, value gets its own slot"
    assert [r.measurements["value"] for r in ring][-2:] == [0.5, 7.0]
    assert [r.measurements["response_time"] for r in ring][:2] == [0.02, 0.03]


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
