"""Long-lived data kept out of the cyclic GC's sight: what CPython does itself for tuples and dicts of
numbers and strings, done for the records and number columns each gate keeps.

Why: serve freezes what a start or a reload made (engine/pauses.py), so a full pass of the collector
walks only what was made since. At 10,000 gates that was still 25,000-90,000 objects: each gate's
last Result and its Evidence (replaced every interval, which is long enough to reach the oldest
generation), and the number columns of its history ring and uptime buckets (made anew at its first
evaluation and when they are coarsened). A full pass comes once a quarter as many objects as the
last one left have been promoted, so every 4-5 s, and took 15-44 ms (measured in a serve with a
gc.callbacks timer); the scrape that met it waited that long.

An object whose fields hold only untracked objects can be in no reference cycle, so the collector
has nothing to find in it; reference counting still frees it. Untracking one that holds a tracked
object would hide what it holds from the collector's count of outside references, so untrack()
checks every field first and leaves such a record tracked. A number array holds no objects at all.
"""

from __future__ import annotations

import array
import ctypes
import gc
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def _load() -> Callable[[object], None] | None:
    try:
        fn = ctypes.pythonapi.PyObject_GC_UnTrack  # a PyDLL: called with the GIL held, as it must be
    except AttributeError:  # not CPython
        return None
    fn.argtypes = (ctypes.py_object,)
    fn.restype = None
    return fn


_UNTRACK = _load()


def untrack(record: T) -> T:
    """`record` (a slotted object), out of the collector's sight if every field it holds is untracked
    (strings, numbers, None, dicts and tuples of those, records untracked before); else left as it is."""
    if _UNTRACK is not None and gc.is_tracked(record):
        for name in type(record).__slots__:  # type: ignore[attr-defined]
            if gc.is_tracked(getattr(record, name, None)):
                return record
        _UNTRACK(record)
    return record


def numbers(typecode: str, values: Iterable[float] | Iterable[int] | bytes = ()) -> array.array:
    """A new array of numbers, untracked (an array holds no objects, only its type)."""
    return column(array.array(typecode, values))


def column(a: array.array) -> array.array:
    """`a`, untracked."""
    if _UNTRACK is not None:
        _UNTRACK(a)
    return a
