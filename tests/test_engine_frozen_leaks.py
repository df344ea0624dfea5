"""No evaluation leaves garbage behind that gc.freeze() then keeps for good.

serve freezes every object the collector tracks at start and after each reload (engine/pauses.py). An
evaluation in flight at that moment has its futures, tasks and frames frozen with it; when it ends, a
reference cycle through any of them is never collected again: a leak per reload, in proportion to the
evaluations in flight. Failures made cycles of that kind (an exception's traceback holds the frame that
holds the future that holds the exception). Before the fixes, 5 reloads of 2,000 gates (half of them
missing files) left 53,049 objects frozen as garbage.

Here a real Runtime with freeze_gc=True runs gates that fail in each way a probe can fail while in flight
(a file or report that is not there, a refused or unanswered connection, a TLS handshake with a plain-HTTP
server or one that never answers, a command that outlives its timeout), reloads a few times while they
run, and then hands the frozen objects back to the collector: whatever it finds unreachable among them was
frozen garbage. Then the same failures one at a time with the cyclic GC off, so that a reference cycle
an evaluation leaves shows up whatever the timing. Counted with the garbage collector, bounded in time
(about 20 s in all), not timed.

Which test sees which fix (each checked by undoing it): the reloads see forget() in engine/evaluate.py and
`del future` in probes/reading.py (thousands of objects each); the one-at-a-time test sees the TLS
handshake's traceback and the `del fut` in probes/httpconn.py (which the reloads catch only when a freeze
lands mid-handshake).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import one_step_tracker
from exporter.engine.runtime import Runtime, load_configs

# A local server that answers every request with a plain-HTTP 400 and closes: what an https:// URL meets
# when the port speaks plain HTTP (the TLS handshake fails on its answer).
PLAIN_SERVER = textwrap.dedent("""
    import socket, sys, threading, time
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    print(s.getsockname()[1], flush=True)
    def answer(c):
        try:
            c.settimeout(5)
            c.recv(4096)
            # so that handshakes are in flight at a freeze, and fail well before the gates' timeouts: one that
            # fails after its caller gave up is asyncio's to clean up (see docs/performance.md)
            time.sleep(0.4)
            c.sendall(b"HTTP/1.1 400 Bad Request\\r\\ncontent-length: 0\\r\\nconnection: close\\r\\n\\r\\n")
        except OSError:
            pass
        finally:
            c.close()
    while True:
        c, _ = s.accept()
        threading.Thread(target=answer, args=(c,), daemon=True).start()
""")


@pytest.fixture
def plain_port() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(512)
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.fixture
def alive_before() -> Iterator[set[int]]:
    """The ids of every object alive before the test, kept alive meanwhile (so their ids are not reused):
    one an earlier test let go of in the middle of this one, frozen by this runtime, is not its leak."""
    gc.unfreeze()
    gc.collect()
    earlier = gc.get_objects()
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    yield {id(o) for o in earlier}
    gc.unfreeze()
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)
    del earlier


def gates(timeout: str, tmp: Path, plain: int, silent: int, refused: int) -> str:
    missing = tmp / "nothing-here"
    kinds = {
        "file": (60, f"file: {{path: '{missing}/f'}}"),
        "junit": (60, f"junit: {{path: '{missing}/*.xml'}}"),
        "refused": (10, f"http: {{url: 'http://127.0.0.1:{refused}/'}}"),
        "silent": (10, f"http: {{url: 'http://127.0.0.1:{silent}/'}}"),
        "tlsplain": (10, f"http: {{url: 'https://127.0.0.1:{plain}/'}}"),
        "tlssilent": (10, f"http: {{url: 'https://127.0.0.1:{silent}/'}}"),
        "command": (10, f"command: {{argv: ['{sys.executable}', '-c', 'import time; time.sleep(30)']}}"),
    }
    return "\n".join(f"- {{id: {name}{i}, {probe}, interval: 1s, timeout: {timeout}}}"
                     for name, (n, probe) in kinds.items() for i in range(n))


SLOW = ("silent", "tlsplain", "tlssilent", "command")  # the kinds whose evaluations last long enough


async def in_flight(runtime: Runtime) -> None:
    """Until an evaluation of each SLOW kind is running (bounded: 5 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        running = {gid.rstrip("0123456789") for _, gid in runtime.scheduler._running} if runtime.scheduler else ()
        if all(kind in running for kind in SLOW):
            return
        assert loop.time() < deadline, f"evaluations of {SLOW} in flight within 5 s: {running}"
        await asyncio.sleep(0.01)


async def until(cond: Callable[[], bool]) -> None:
    """Until cond() holds (bounded: 5 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not cond():
        assert loop.time() < deadline, "in time"
        await asyncio.sleep(0.02)


async def test_reloads_with_failures_in_flight_freeze_no_garbage(tmp_path: Path, plain_port, silent_port,
                                                                   refused_port, alive_before):
    path = tmp_path / "gates.yml"
    ports = (plain_port, silent_port, refused_port)
    path.write_text(one_step_tracker(gates("800ms", tmp_path, *ports)))
    runtime = Runtime([str(path)], freeze_gc=True, max_concurrency=256)
    try:
        await runtime.start(load_configs([str(path)]))
        for timeout in ("900ms", "800ms", "900ms", "800ms", "900ms"):  # every gate changes every time
            await in_flight(runtime)  # the reload lands while they wait out their timeouts
            path.write_text(one_step_tracker(gates(timeout, tmp_path, *ports)))
            assert await runtime.reload() == []
        await in_flight(runtime)
        state, config = runtime.states["t"], runtime.trackers["t"]
        await until(lambda: all(state.get(g.id).result is not None for g in config.gates))
        passed = [g.id for g in config.gates if state.get(g.id).result.outcome == "pass"]  # type: ignore[union-attr]
        assert passed == [], "every gate fails here"
    finally:
        await runtime.stop()
    await asyncio.sleep(0.1)
    gc.collect()  # what is garbage and was never frozen goes now; what is left unreachable was frozen
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        garbage = [o for o in gc.garbage if id(o) not in alive_before]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    transports, garbage = cpython_106503(garbage)
    types = collections.Counter(type(o).__name__ for o in garbage)
    assert not types, f"{len(garbage)} objects were frozen as garbage: {types.most_common(12)}"
    # the TLS connections open at the freezes, at most (20 TLS gates, 6 freezes: start and 5 reloads)
    assert transports <= 20 * 6


def cpython_106503(garbage: list[object]) -> tuple[int, list[object]]:
    """CPython 3.11's own cycle, left out: a socket transport keeps a bound method of its own as its read
    callback (`_read_ready_cb`), which holds the transport (python/cpython#100348; cleared on close from
    3.12 on). One per asyncio connection (TLS here) open at a freeze stays, about 7 objects; its socket is
    closed. Returns how many, and the rest."""
    if sys.version_info >= (3, 12):
        return 0, garbage
    ids = {id(o): o for o in garbage}
    roots = [o for o in garbage if type(o).__name__ == "_SelectorSocketTransport"
             and getattr(getattr(o, "_read_ready_cb", None), "__self__", None) is o]  # (vars() would add a dict)
    left_out: set[int] = set()
    todo: list[object] = list(roots)
    while todo:  # what of the garbage those transports hold
        o = todo.pop()
        if id(o) in left_out:
            continue
        left_out.add(id(o))
        todo += [r for r in gc.get_referents(o) if id(r) in ids]
    return len(roots), [o for o in garbage if id(o) not in left_out]


# The same failures one at a time, with the cyclic GC off: whatever reference cycle an evaluation leaves
# shows up whatever the timing (above, only a cycle that a freeze catches in flight does).
CASES = {
    "file": "file: {path: '%(missing)s/f'}",
    "junit": "junit: {path: '%(missing)s/*.xml'}",
    "refused": "http: {url: 'http://127.0.0.1:%(refused)d/'}",
    "silent": "http: {url: 'http://127.0.0.1:%(silent)d/'}",
    "tlsplain": "http: {url: 'https://127.0.0.1:%(plain)d/'}",
    "tlssilent": "http: {url: 'https://127.0.0.1:%(silent)d/'}",
    "tlsrefused": "http: {url: 'https://127.0.0.1:%(refused)d/'}",
    "command": "command: {argv: ['%(python)s', '-c', 'import time; time.sleep(30)']}",
    "exists": "file: {path: '%(here)s'}",  # passes: the baseline
}


@pytest.mark.parametrize("case", CASES)
async def test_a_failed_evaluation_leaves_no_reference_cycle(case: str, tmp_path: Path, plain_port, silent_port,
                                                             refused_port, alive_before):
    from exporter.engine.evaluate import evaluate
    from tests.probe_support import make_ctx, parse_gate

    probe = CASES[case] % {"missing": tmp_path / "nothing-here", "refused": refused_port, "silent": silent_port,
                           "plain": plain_port, "python": sys.executable, "here": __file__}
    gate = parse_gate(tmp_path, f"- {{id: g, {probe}, timeout: 800ms}}")
    for _ in range(2):  # the first run may build what lives on (a thread pool, a cached context)
        gc.collect()
        before = {id(o) for o in gc.get_objects()} | alive_before
        gc.disable()
        try:
            result = await evaluate(gate, make_ctx(gate.timeout))
            assert (result.outcome == "pass") == (case == "exists"), result
            del result
            await asyncio.sleep(0.05)  # what asyncio closes on its next turns (transports' connection_lost)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            garbage = [o for o in gc.garbage if id(o) not in before]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    _, garbage = cpython_106503(garbage)
    types = collections.Counter(type(o).__name__ for o in garbage)
    assert not types, f"{case}: {len(garbage)} objects in reference cycles: {types.most_common(12)}"
