"""How a config-loading child's answer is pickled and read back (config/apart.py has the processes).

One Pickler (one memo) writes the number of batches, the gates BATCH at a time, then the answer, whose
gates are then references to the ones already sent; the reader unpickles a batch per step, so that the
event loop (load_sliced) or another thread (result) gets its turn between two. Mapping proxies are sent
as their dict, RE2 patterns as their source (compiled once on arrival).
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import pickle  # nosec B403 - only between serve and the child it started, over a private pipe
import struct
import time
import types
from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")
BATCH = 32  # gates unpickled per call (~0.1 ms); load_sliced() lets the event loop run between calls
_HEADER = struct.Struct("<Q")  # the pickle's length, so that a cut-off result is never taken for one


def loads(data: memoryview | bytes) -> Any:
    """What dumps() pickled (without its header), read in this thread (see _load_steps)."""
    return _drain(_load_steps(data))


def _load_steps(data: memoryview | bytes) -> Generator[None, None, Any]:
    """What dumps() pickled, a step per batch of gates. One Unpickler, whose memo lives on from one load()
    to the next, reads BATCH gates per call: one pickle.loads of 10,000 gates is a single C call that holds
    the GIL ~34 ms, and the event loop (a scrape) waited for all of it. The configs come last, their gates
    the very objects of the batches."""
    unpickler = pickle.Unpickler(io.BytesIO(data))  # nosec B301 - our own child's answer
    for _ in range(unpickler.load()):  # nosec B301
        unpickler.load()  # nosec B301
        yield
    return unpickler.load()  # nosec B301


def _drain(steps: Generator[None, None, T]) -> T:
    """Run the steps in this thread, offering the GIL between them (the event loop's thread takes it, if it
    waits for it)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        time.sleep(0)


# --- the child's side ---------------------------------------------------------------------------


def _mappingproxy(items: dict[str, Any]) -> types.MappingProxyType[str, Any]:
    return types.MappingProxyType(items)


def _pattern(source: str) -> Any:
    from exporter.config.fields import Pattern

    return Pattern(source)


def _reduce_pattern(p: Any) -> tuple[Any, tuple[str]]:
    return _pattern, (str(p),)


def _dispatch() -> dict[type, Any]:
    table: dict[type, Any] = dict(copyreg.dispatch_table)
    table[types.MappingProxyType] = lambda m: (_mappingproxy, (dict(m),))
    with contextlib.suppress(ImportError):  # google-re2 missing: there are no patterns to send
        from exporter.config.fields import Pattern

        table[Pattern] = _reduce_pattern
    return table


def _batches(value: object) -> list[list[Any]]:
    """The gates of an ("ok", configs) result, BATCH at a time (none for any other result)."""
    if not (isinstance(value, tuple) and len(value) == 2 and value[0] == "ok"):
        return []
    gates = [g for config in value[1] for g in getattr(config, "gates", ())]
    return [gates[i:i + BATCH] for i in range(0, len(gates), BATCH)]


def dumps(value: object) -> bytes:
    """`value` pickled as the child sends it (header included): mapping proxies and RE2 patterns too.
    One Pickler (one memo) writes the number of batches, the gates BATCH at a time, then `value`,
    whose gates are then references to the ones already sent (see loads)."""
    out = io.BytesIO()
    out.write(_HEADER.pack(0))
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch()
    batches = _batches(value)
    pickler.dump(len(batches))
    for batch in batches:
        pickler.dump(batch)
    pickler.dump(value)
    data = out.getbuffer()
    _HEADER.pack_into(data, 0, len(data) - _HEADER.size)
    return bytes(data)
