"""Each gate's last Result, its Evidence and its number columns are out of the cyclic GC's sight
(exporter/state/untracked.py), and nothing that could be in a reference cycle is: the collector still
finds a cycle through a record that holds a tracked object."""

from __future__ import annotations

import gc
import time
import weakref
from dataclasses import dataclass

from exporter.model import Evidence, Result
from exporter.state import untracked
from exporter.state.buckets import Buckets
from exporter.state.memory import State


def test_a_recorded_result_and_its_evidence_and_columns_are_untracked():
    state = State()
    now = time.time()
    r = Result("g", "pass", now, 0.1, {"value": 2.0, "age": 3.0}, "ok", Evidence("probe", now, commit="abc"))
    assert gc.is_tracked(r) and gc.is_tracked(r.evidence)  # made tracked, as every slotted object is
    st = state.record(r)
    assert not gc.is_tracked(r) and not gc.is_tracked(r.evidence)
    assert st.result is r and st.result.value == 2.0  # still itself, and read as before
    buckets = st.buckets.columns()
    assert buckets and not any(gc.is_tracked(c) for c in buckets)
    ring = st.history
    assert not gc.is_tracked(ring._nums) and not gc.is_tracked(ring._words)
    assert [h.value for h in st.history] == [2.0]


def test_columns_stay_untracked_when_they_are_made_anew():
    b = Buckets.of({600: (1, 1), 0: (1, 2)})
    b.add(300, 1)  # before the last bucket: new columns
    b.compact(time.time(), None)
    assert not any(gc.is_tracked(c) for c in b.columns())
    packed = Buckets.from_pack(b"\x00" * 24)
    assert not any(gc.is_tracked(c) for c in packed.columns())


@dataclass(slots=True)
class Holder:
    name: str
    held: object


def test_a_record_holding_a_tracked_object_stays_tracked_and_its_cycle_is_collected():
    class Box(list):  # a list that takes a weak reference
        pass

    cycle = Box()
    h = untracked.untrack(Holder("x", cycle))
    cycle.append(h)  # h -> box -> h
    assert gc.is_tracked(h)
    probe = weakref.ref(cycle)
    del h, cycle
    assert probe() is not None  # only the cyclic GC can free it
    gc.collect()
    assert probe() is None
    plain = untracked.untrack(Holder("y", 3.0))
    assert not gc.is_tracked(plain) and plain.held == 3.0
