"""Buckets (exporter/state/buckets.py) answer exactly as the dict of [passed, total] lists they replace."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.state import packs
from exporter.state.buckets import Buckets
from exporter.state.memory import GateState, State, bucket_start
from exporter.state.restore import BadRow, packed

NOW = 1_760_000_000


class DictBuckets:
    """GateState's buckets before flat columns (memory.py at bba2c17): the reference."""

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}

    def add(self, start: int, p: int, n: int) -> None:
        b = self.buckets.setdefault(start, [0, 0])
        b[0] += p
        b[1] += n

    def uptime(self, window: float, now: float) -> tuple[int, int]:
        lo, passed, total = now - window, 0, 0
        for start, (p, t) in self.buckets.items():
            if start >= lo:
                passed += p
                total += t
        return passed, total

    def compact(self, now: float, keep: float) -> None:
        merged: dict[int, list[int]] = {}
        for start, (p, t) in self.buckets.items():
            if start < now - keep:
                continue
            b = merged.setdefault(bucket_start(start, now), [0, 0])
            b[0] += p
            b[1] += t
        self.buckets = merged


ages = st.integers(0, 40 * 86400)
op = st.one_of(
    st.tuples(st.just("add"), ages, st.integers(0, 3), st.sampled_from([1, 1, 300, 3600, 86400])),
    st.tuples(st.just("set"), ages, st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("compact"), st.integers(0, 3 * 86400), st.sampled_from([86400.0, 3 * 86400.0, 20 * 86400.0,
                                                                             float("inf")]), st.just(0)),
    st.tuples(st.just("ratio"), st.integers(0, 3 * 86400), st.sampled_from([600.0, 7200.0, 86400.0, 7 * 86400.0,
                                                                           45 * 86400.0]), st.just(0)),
    st.tuples(st.just("ratio_at"), st.integers(0, 200), st.sampled_from([-1, 0, 1]), st.just(0)),  # from a start on
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=60))
def test_random_adds_compactions_and_ratios_answer_as_the_dict_did(ops: list[tuple[str, int, float, int]]) -> None:
    got, want, now = GateState(), DictBuckets(), NOW
    for kind, a, b, c in ops:
        if kind == "add":  # an evaluation `a` seconds ago (or counts merged in at an aligned start)
            start = int(now - a) // c * c
            n = max(1, int(b))
            got.buckets.add(start, min(int(b), n), n)
            want.add(start, min(int(b), n), n)
        elif kind == "set":
            start = int(now - a) // 300 * 300
            got.buckets[start] = [int(b), int(b) + c]
            want.buckets[start] = [int(b), int(b) + c]
        elif kind == "compact":
            now += a
            got.compact(now, b)
            want.compact(now, b)
        elif kind == "ratio":
            assert got.uptime(b, now + a) == want.uptime(b, now + a)
        elif want.buckets:  # the window begins at a bucket's start, or a second either side of it
            lo = sorted(want.buckets)[a % len(want.buckets)] + b
            assert got.uptime(now - lo, now) == want.uptime(now - lo, now)
        assert got.buckets == want.buckets and want.buckets == got.buckets
        assert list(got.buckets) == sorted(want.buckets)
        assert list(got.buckets.items()) == sorted((s, tuple(v)) for s, v in want.buckets.items())
        assert list(got.buckets.values()) == [tuple(want.buckets[s]) for s in sorted(want.buckets)]
        assert len(got.buckets) == len(want.buckets)


def test_record_counts_each_result_in_its_five_minute_bucket_and_out_of_order_ones_too() -> None:
    from exporter.model import Result

    state = State()
    times = [NOW + 10, NOW + 20, NOW + 400, NOW - 300, NOW + 30, NOW - 5000]  # two late ones land before the last
    for i, t in enumerate(times):
        state.record(Result("g", "pass" if i % 2 else "fail", float(t), 0.0, {}, ""))
    b = state.gates["g"].buckets
    want = {}
    for i, t in enumerate(times):
        s = int(t // 300 * 300)
        p, n = want.get(s, (0, 0))
        want[s] = (p + i % 2, n + 1)
    assert b == want
    assert list(b) == sorted(want)
    assert state.pass_ratio("g", 10**6, NOW + 400) == (3, 6)
    assert state.pass_ratio("g", 500, NOW + 400) == (0, 1)  # from NOW - 100 on: the bucket at NOW + 100 only
    assert state.pass_ratio("g", 600, NOW + 400) == (1, 4)  # from NOW - 200 on: and the one at NOW - 200


def test_mapping_reads_equality_and_a_pack_round_trip() -> None:
    b = Buckets.of({600: [1, 2], 0: (3, 4), 300: [0, 0]})
    assert b[0] == (3, 4) and b.get(900) is None and 300 in b and 900 not in b and "x" not in b
    assert b.get("x") is None and b.get(300.0) == (0, 0) and 300.0 in b  # as the dict answered
    assert b == {0: [3, 4], 300: [0, 0], 600: [1, 2]} and b != {0: [3, 4], 300: [0, 0]} and b != {0: [3, 4]}
    assert b != {0: [3, 4], 300: [0, 0], 601: [1, 2]} and b != {0: [3, 5], 300: [0, 0], 600: [1, 2]}
    assert b == Buckets([0, 300, 600], [3, 0, 1], [4, 0, 2]) and b != Buckets()
    assert b.since(1) == (1, 2) and b.since(0) == (4, 6) and b.since(601) == (0, 0)
    data = packs.pack(b)  # the packs module reads it as the mapping it is
    assert data == packs.pack({0: [3, 4], 300: [0, 0], 600: [1, 2]})
    assert Buckets.from_pack(data) == b and packed(data) == b
    assert packs.unpack(data) == ([0, 300, 600], [3, 0, 1], [4, 0, 2])
    assert packs.pack(Buckets.from_pack(data)) == data
    assert Buckets.from_pack(b"") == {} and len(Buckets.from_pack(b"")) == 0


def test_a_pack_that_is_not_ours_is_refused_before_it_becomes_buckets() -> None:
    for bad in (b"\x00" * 23, "text", 5, packs.pack_columns(([100, 100], [1, 1], [1, 1])),
                packs.pack_columns(([100], [2], [1])), packs.pack_columns(([100], [-1], [1])),
                packs.pack_columns(([200, 100], [1, 1], [1, 1])), packs.pack_columns(([100], [1], [2**53 + 1]))):
        with pytest.raises(BadRow):
            packed(bad)


def test_ten_thousand_gates_of_thirty_days_are_flat() -> None:
    """98 buckets held as three columns: a few hundred bytes a gate, not ~14 KB."""
    b = Buckets.of({NOW - i * 86400: [i, i + 1] for i in range(98)})
    size = sys.getsizeof(b) + sum(sys.getsizeof(c) for c in b.columns())
    assert size < 3000
