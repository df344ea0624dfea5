"""One gate's uptime buckets as three flat columns (starts ascending, passed, totals) of 64-bit integers.

A dict of [passed, total] lists cost ~140 B per bucket (the dict slot, the list, its two ints, the key);
at 10,000 gates of 30 days (~98 buckets each after compaction) that was ~140 MB, and a million small
lists for the cyclic GC to walk. Three array('q') columns hold the same in 24 B a bucket, the layout of
a pack in the state file (exporter/state/packs.py), so a restart builds them from the pack's bytes.

Reads may come from another thread (reports) while the loop adds: the columns are one tuple, replaced
whole by a compaction or an insertion before the last bucket; an append extends the totals and passed
before the starts (readers zip, so they see the old length until the starts catch up), and a bump adds
to the total before the passed (never more passed than run).
"""

from __future__ import annotations

import array
import bisect
import sys
from collections.abc import ItemsView, Iterator, Mapping, Sequence, ValuesView
from typing import cast

from exporter.state.untracked import column, numbers

Cols = tuple["array.array[int]", "array.array[int]", "array.array[int]"]


def _cols(starts: Sequence[int] = (), passed: Sequence[int] = (), totals: Sequence[int] = ()) -> Cols:
    return numbers("q", starts), numbers("q", passed), numbers("q", totals)


class Buckets(Mapping[int, tuple[int, int]]):
    """bucket start -> (passed, total), ascending by start; read like the dict it replaces."""

    __slots__ = ("_cols",)

    def __init__(self, starts: Sequence[int] = (), passed: Sequence[int] = (), totals: Sequence[int] = ()):
        """From sorted columns (starts ascending and unique: unchecked)."""
        self._cols = _cols(starts, passed, totals)

    @classmethod
    def of(cls, buckets: Mapping[int, Sequence[int]]) -> Buckets:
        """From a mapping of start -> (passed, total), in any order."""
        starts = sorted(buckets)
        return cls(starts, [buckets[s][0] for s in starts], [buckets[s][1] for s in starts])

    @classmethod
    def from_pack(cls, data: bytes) -> Buckets:
        """From a pack's bytes (three runs of little-endian int64; packs.unpack's shape check is the caller's)."""
        a = numbers("q")
        a.frombytes(data)
        if sys.byteorder == "big":
            a.byteswap()
        n = len(a) // 3
        b = cls.__new__(cls)
        b._cols = (column(a[:n]), column(a[n:2 * n]), column(a[2 * n:]))
        return b

    def columns(self) -> Cols:
        """The (starts, passed, totals) arrays (not copies: do not change them)."""
        return self._cols

    # --- writes (the loop only) ------------------------------------------------------------------

    def add(self, start: int, passed: int, total: int = 1) -> None:
        """Add counts to the bucket at `start`, made if missing: O(1) at or after the last bucket."""
        starts, ps, ts = cols = self._cols
        if starts and starts[-1] == start:
            ts[-1] += total
            ps[-1] += passed
        elif not starts or starts[-1] < start:
            ts.append(total)
            ps.append(passed)
            starts.append(start)
        else:
            i = bisect.bisect_left(starts, start)
            if starts[i] == start:
                ts[i] += total
                ps[i] += passed
            else:
                new = tuple(numbers("q", c) for c in cols)
                for c, v in zip(new, (start, passed, total), strict=True):
                    c.insert(i, v)
                self._cols = cast(Cols, new)

    def __setitem__(self, start: int, value: Sequence[int]) -> None:
        """Set a bucket's (passed, total)."""
        p, t = value
        if start in self:
            i = bisect.bisect_left(self._cols[0], start)
            self._cols[2][i] = t
            self._cols[1][i] = p
        else:
            self.add(start, p, t)

    def compact(self, now: float, keep: float | None) -> None:
        """GateState.compact: buckets older than `keep` seconds dropped, the others coarsened as they age."""
        from exporter.state import packs  # here: packs imports memory, which imports this module

        got = packs.coarsen(cast(packs.Columns, self._cols), now, keep)
        if got[0] is not self._cols[0]:
            self._cols = cast(Cols, tuple(column(c) if type(c) is array.array else numbers("q", c) for c in got))

    # --- reads ---------------------------------------------------------------------------------

    def since(self, lo: float) -> tuple[int, int]:
        """(passed, total) summed over the buckets starting at `lo` or later."""
        starts, passed, totals = self._cols
        i = bisect.bisect_left(starts, lo)
        return sum(passed[i:len(starts)]), sum(totals[i:len(starts)])

    def __getitem__(self, start: int) -> tuple[int, int]:
        starts, passed, totals = self._cols
        try:
            i = bisect.bisect_left(starts, start)
        except TypeError:  # a key no dict of int starts would hold
            raise KeyError(start) from None
        if i < len(starts) and starts[i] == start:
            return passed[i], totals[i]
        raise KeyError(start)

    def __contains__(self, start: object) -> bool:
        starts = self._cols[0]
        try:
            i = bisect.bisect_left(starts, start)  # type: ignore[call-overload]
        except TypeError:
            return False
        return i < len(starts) and starts[i] == start

    def __len__(self) -> int:
        return len(self._cols[0])

    def __iter__(self) -> Iterator[int]:
        return iter(self._cols[0].tolist())

    def items(self) -> ItemsView[int, tuple[int, int]]:
        return _Items(self)

    def values(self) -> ValuesView[tuple[int, int]]:
        return _Values(self)

    def pairs(self) -> list[tuple[int, tuple[int, int]]]:
        """Every (start, (passed, total)), ascending: one snapshot, built in C."""
        starts, passed, totals = self._cols
        return list(zip(starts, zip(passed, totals, strict=False), strict=False))  # as long as the starts

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Buckets):
            return self._cols == other._cols
        if isinstance(other, Mapping):
            return len(other) == len(self) and all(
                start in other and tuple(other[start]) == pt for start, pt in self.pairs())
        return NotImplemented

    def __repr__(self) -> str:
        return f"Buckets({dict(self.pairs())!r})"


class _Items(ItemsView[int, tuple[int, int]]):
    __slots__ = ()
    _mapping: Buckets

    def __iter__(self) -> Iterator[tuple[int, tuple[int, int]]]:
        return iter(self._mapping.pairs())


class _Values(ValuesView[tuple[int, int]]):
    __slots__ = ()
    _mapping: Buckets

    def __iter__(self) -> Iterator[tuple[int, int]]:
        starts, passed, totals = self._mapping.columns()
        return iter(list(zip(passed[:len(starts)], totals, strict=False)))
