"""Regex matching on data a target controls (http `body_regex`, command `value_regex`).

Patterns are RE2 programs compiled at load (`config.fields.Pattern`): a match takes time linear
in the text, so no output can make it backtrack exponentially. Linear is not free: a pattern
whose DFA outgrows RE2's memory budget falls back to RE2's NFA, which on a 4 MiB body costs
seconds per hundred program instructions (bench/regex_engines.py). So a match whose work
(text length x program size) is small runs right here on the loop (well under a millisecond), and
a larger one in a daemon thread (RE2 releases the GIL while it matches), awaited for at most the
gate's timeout. A thread cannot be stopped, but it ends on its own (linear time), it is a daemon
(it never holds up the exporter's exit), a gate whose previous match still runs gets an error
instead of a second thread, and at most MAX_THREADS matches run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from exporter.config.durations import format_duration
from exporter.config.fields import Pattern
from exporter.probes.base import ProbeError

# Below this much work (text bytes x program instructions) a match takes well under 1 ms even on
# RE2's slowest path: handing it to a thread would cost more than it saves.
INLINE_WORK = 1 << 20
MAX_THREADS = 8

_lock = threading.Lock()
_running: set[tuple[str, str]] = set()


def compiled(source: str) -> Any:
    """The RE2 program of a pattern: the one compiled at load, or compiled now for a spec built in code."""
    return (source if isinstance(source, Pattern) else Pattern(source)).compiled


async def search(source: str, text: bytes, *, gate_id: str, what: str, timeout: float) -> Any:
    """The first match of `source` in `text` (an re2 match on bytes) or None; ProbeError if it takes
    longer than `timeout` or cannot be started."""
    program = compiled(source)
    if len(text) * max(program.programsize, 1) <= INLINE_WORK:
        return program.search(text)
    key = (gate_id, what)
    with _lock:
        if key in _running:
            raise ProbeError(f"{what}: the previous match on this gate's output is still running")
        if len(_running) >= MAX_THREADS:
            raise ProbeError(f"{what}: {MAX_THREADS} regex matches already running, not starting another")
        _running.add(key)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = program.search(text)
        except Exception as exc:  # noqa: BLE001 - handed to the awaiting probe, whose evaluation reports it
            error = exc
        finally:
            with _lock:
                _running.discard(key)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits for this match
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"qg-regex-{gate_id}", daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout)
    except TimeoutError:
        raise ProbeError(f"{what} did not finish matching within {format_duration(timeout)}") from None


def running() -> int:
    """How many matches run in threads now (tests and the fault test read it)."""
    with _lock:
        return len(_running)
