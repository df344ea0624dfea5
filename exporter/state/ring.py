"""A gate's recent evaluations, packed into flat arrays (what /api/gates/{id} shows as its history)."""

from __future__ import annotations

import array
from collections.abc import Iterator

from exporter.model import OUTCOMES, Result

_CODE = {o: i for i, o in enumerate(OUTCOMES)}
_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}  # measurement-name tuples, shared by every gate of a kind
MAX_NAMES = 60  # distinct measurement names one ring tracks (a presence bit each, beside 2 bits of outcome)


class ResultRing:
    """A gate's last `maxlen` results: no object per entry.

    Numbers live in one array of doubles, `2 + names` per entry (started, duration, then one slot
    per measurement name the gate has reported); one 64-bit word per entry holds the outcome and
    which names the entry had (an error outcome has none). Messages are kept only when some entry
    has one. At 10,000 gates with 50 entries that is about 25 MB, where an object per entry (a
    tuple and a bytes object) took about 80 MB. Reads (the API, the status page) rebuild Results;
    they are rare next to appends.

    Entries restored from the state file can be attached later, from another thread, as `older`
    (one attribute store, atomic under the GIL): reads put them before the ring's own entries until
    the ring is full by itself.
    """

    __slots__ = ("_gate", "_names", "_nums", "_words", "_msgs", "_head", "_maxlen", "older")

    def __init__(self, maxlen: int = 50) -> None:
        self._gate = ""
        self._names: tuple[str, ...] = ()
        self._nums = array.array("d")
        self._words = array.array("Q")
        self._msgs: list[str] | None = None
        self._head = 0  # index of the oldest entry once the ring is full
        self._maxlen = maxlen
        self.older: tuple[Result, ...] = ()

    def _stride(self) -> int:
        return 2 + len(self._names)

    def _widen(self, names: tuple[str, ...]) -> None:
        """Track more measurement names: re-lay the stored entries with the wider stride."""
        old_stride, entries = self._stride(), list(self._entries())
        self._names = _KEYS.setdefault(names, names)
        nums, stride = array.array("d"), self._stride()
        for i in entries:
            row = self._nums[i * old_stride:(i + 1) * old_stride]
            nums.extend(row)
            nums.extend([0.0] * (stride - old_stride))
        self._nums, self._words = nums, array.array("Q", (self._words[i] for i in entries))
        if self._msgs is not None:
            self._msgs = [self._msgs[i] for i in entries]
        self._head = 0

    def append(self, r: Result) -> None:
        """Add a result, dropping the oldest beyond maxlen."""
        self._gate = r.gate
        meas = r.measurements
        names = self._names
        if any(k not in names for k in meas):
            wider = names + tuple(k for k in meas if k not in names)
            if len(wider) > MAX_NAMES:  # a gate inventing names: keep the newest entry's names only
                self._nums, self._words, self._msgs, self._head, self._names = array.array("d"), \
                    array.array("Q"), None, 0, ()
                wider = tuple(meas)[:MAX_NAMES]
            self._widen(wider)
            names = self._names
        stride = 2 + len(names)
        row = [r.started, r.duration] + [0.0] * len(names)
        mask = 0
        for j, k in enumerate(names):
            v = meas.get(k)
            if v is not None:
                row[2 + j] = v
                mask |= 1 << j
        word = _CODE[r.outcome] | mask << 2
        n = len(self._words)
        if n < self._maxlen:
            self._nums.extend(row)
            self._words.append(word)
            if r.message and self._msgs is None:
                self._msgs = [""] * n
            if self._msgs is not None:
                self._msgs.append(r.message)
            if self.older and n + 1 == self._maxlen:
                self.older = ()  # full by itself: what was restored is all older than the ring
            return
        i = self._head
        self._nums[i * stride:(i + 1) * stride] = array.array("d", row)
        self._words[i] = word
        if r.message and self._msgs is None:
            self._msgs = [""] * n
        if self._msgs is not None:
            self._msgs[i] = r.message
        self._head = (i + 1) % n

    def _entries(self) -> Iterator[int]:
        """Slot indexes, oldest first."""
        n = len(self._words)
        return ((self._head + k) % n for k in range(n))

    def _result(self, i: int) -> Result:
        stride, names = self._stride(), self._names
        row = self._nums[i * stride:(i + 1) * stride]
        word = self._words[i]
        mask = word >> 2
        meas = {k: row[2 + j] for j, k in enumerate(names) if mask >> j & 1}
        return Result(self._gate, OUTCOMES[word & 3], row[0], row[1], meas, self._msgs[i] if self._msgs else "")

    def _older(self) -> tuple[Result, ...]:
        older, room = self.older, self._maxlen - len(self._words)
        return older[len(older) - room:] if room > 0 and older else ()

    def __iter__(self) -> Iterator[Result]:
        yield from self._older()
        for i in list(self._entries()):
            yield self._result(i)

    def __reversed__(self) -> Iterator[Result]:
        for i in reversed(list(self._entries())):
            yield self._result(i)
        yield from reversed(self._older())

    def __len__(self) -> int:
        return len(self._words) + len(self._older())

    def __getitem__(self, index: int) -> Result:
        return list(self)[index]
