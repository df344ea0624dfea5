"""A gate's recent evaluations, packed into flat arrays (what /api/gates/{id} shows as its history)."""

from __future__ import annotations

import array
import math
from collections.abc import Iterator

from exporter.model import OUTCOMES, Result
from exporter.state.untracked import numbers

_CODE = {o: i for i, o in enumerate(OUTCOMES)}
_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {}  # measurement-name tuples, shared by every gate of a kind
MAX_NAMES = 60  # distinct measurement names one ring tracks (a presence bit each, beside 2 bits of outcome)


_LAYOUTS: dict[tuple[tuple[str, ...], tuple[int, ...]], tuple[tuple[int, ...], tuple[tuple[int, str, str], ...],
                                                          tuple[int, ...], tuple[str, ...]]] = {}


def _layout(names: tuple[str, ...], alias: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[tuple[int, str, str], ...],
                                                                    tuple[int, ...], tuple[str, ...]]:
    """A ring layout's tuples (aliases, alias pairs, slots, stored names), shared by every ring with the same."""
    got = _LAYOUTS.get((names, alias))
    if got is None:
        stored = [j for j, a in enumerate(alias) if a < 0]
        where = {j: 2 + k for k, j in enumerate(stored)}
        got = _LAYOUTS[(names, alias)] = (
            alias, tuple((j, names[j], names[a]) for j, a in enumerate(alias) if a >= 0),
            tuple(where[j] if a < 0 else where[a] for j, a in enumerate(alias)), tuple(names[j] for j in stored))
    return got


def _word_code(names: int) -> str:
    """The smallest array type holding 2 bits of outcome and a presence bit per name."""
    return "B" if names <= 6 else "H" if names <= 14 else "I" if names <= 30 else "Q"


def _same(a: float, b: float | None) -> bool:
    """Bitwise the same number (0.0 and -0.0 are told apart; values are finite)."""
    return b is not None and a == b and (a != 0.0 or math.copysign(1.0, a) == math.copysign(1.0, b))


class ResultRing:
    """A gate's last `maxlen` results: no object per entry.

    Numbers live in one array of doubles, `2 + stored` per entry (started, duration, then one slot
    per measurement name the gate has reported, but for names that have so far always equalled an
    earlier name of the same entry: a probe's `value` is often another of its measurements, the
    response time or the file's age); one small word per entry (a byte for up to 6 names) holds the
    outcome and which names the entry had (an error outcome has none). Messages are kept only when
    some entry has one. At 10,000 gates with 50 entries (half http, half file gates) that is about
    19 MB traced (27 MB with a slot per name and 64-bit words), where an object per entry (a tuple
    and a bytes object) took about 80 MB. Reads (the API, the status page) rebuild Results; they are
    rare next to appends.

    Entries restored from the state file can be attached later, from another thread, as `older`
    (one attribute store, atomic under the GIL): reads put them before the ring's own entries until
    the ring is full by itself.
    """

    __slots__ = ("_gate", "_names", "_alias", "_pairs", "_slot", "_stored", "_nums", "_words", "_msgs", "_head",
                 "_maxlen", "older")

    def __init__(self, maxlen: int = 50) -> None:
        self._gate = ""
        self._names: tuple[str, ...] = ()
        self._alias: tuple[int, ...] = ()  # per name: -1 if it has a slot, else the earlier name it equals
        self._pairs: tuple[tuple[int, str, str], ...] = ()  # (index, name, name it equals) of each alias
        self._slot: tuple[int, ...] = ()  # per name: its number's index in an entry's row
        self._stored: tuple[str, ...] = ()  # the names with a slot, in slot order
        self._nums = numbers("d")  # untracked: the collector has nothing to find in numbers
        self._words = numbers("B")
        self._msgs: list[str] | None = None
        self._head = 0  # index of the oldest entry once the ring is full
        self._maxlen = maxlen
        self.older: tuple[Result, ...] = ()

    def _stride(self) -> int:
        return 2 + len(self._stored)

    def _relay(self, names: tuple[str, ...], alias: tuple[int, ...]) -> None:
        """Lay the stored entries out again for these names and aliases (a name added, an alias broken)."""
        entries = list(self._entries())
        old_stride, old_slot, old_n = self._stride(), self._slot, len(self._names)
        self._names = _KEYS.setdefault(names, names)
        self._alias, self._pairs, self._slot, self._stored = _layout(self._names, alias)
        stored = [j for j, a in enumerate(alias) if a < 0]
        nums = numbers("d")
        for i in entries:
            row = self._nums[i * old_stride:(i + 1) * old_stride]
            nums.extend(row[:2])
            nums.extend(row[old_slot[j]] if j < old_n else 0.0 for j in stored)
        self._nums = nums
        self._words = numbers(_word_code(len(names)), (self._words[i] for i in entries))
        if self._msgs is not None:
            self._msgs = [self._msgs[i] for i in entries]
        self._head = 0

    def _reset(self) -> None:
        self._nums, self._words, self._msgs, self._head = numbers("d"), numbers("B"), None, 0
        self._names, self._alias, self._pairs, self._slot, self._stored = (), (), (), (), ()

    def append(self, r: Result) -> None:
        """Add a result, dropping the oldest beyond maxlen."""
        self._gate = r.gate
        meas = r.measurements
        names, alias = self._names, self._alias
        broken: list[int] = []
        for j, name, other in self._pairs:  # each name sharing a slot: still equal to the one it shares with?
            v = meas.get(name)
            if v is not None and not _same(v, meas.get(other)):
                broken.append(j)
        if broken or any(k not in names for k in meas):
            wider = names + tuple(k for k in meas if k not in names)
            if len(wider) > MAX_NAMES:  # a gate inventing names: keep the newest entry's names only
                self._reset()
                names, alias, broken = (), (), []
                wider = tuple(meas)[:MAX_NAMES]
            new = list(alias)
            for j in broken:
                new[j] = -1
            for j in range(len(names), len(wider)):  # a new name equal to an earlier one of this entry shares its slot
                v = meas[wider[j]]
                new.append(next((k for k in range(j) if new[k] < 0 and _same(v, meas.get(wider[k]))), -1))
            self._relay(wider, tuple(new))
            names = self._names
        slot = self._slot
        row = [r.started, r.duration] + [0.0] * len(self._stored)
        mask = 0
        for j, k in enumerate(names):
            v = meas.get(k)
            if v is not None:
                row[slot[j]] = v
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
        stride = len(row)
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
        stride, names, slot = self._stride(), self._names, self._slot
        row = self._nums[i * stride:(i + 1) * stride]
        word = self._words[i]
        mask = word >> 2
        meas = {k: row[slot[j]] for j, k in enumerate(names) if mask >> j & 1}
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
