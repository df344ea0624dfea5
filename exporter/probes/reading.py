"""Blocking work of the report probes (stat, glob, open, read, parse), off the event loop and bounded.

Report kinds (coverage, junit, json_file, sarif, file) touch the file system, and a file system
can block without end: a FIFO opened for reading waits for a writer, a hung network mount never
answers `stat`. Such a call cannot be cancelled, so three rules keep it from spreading:

- it runs in a pool of its own (READ_WORKERS threads), never in the loop's default executor that
  auth, reloads and page rendering use: a stuck read costs at most one report worker;
- a gate whose previous read is still running is not given another worker: that evaluation is
  an error ("previous read still running") and is counted in `skipped_reads()`;
- the workers are daemon threads, so a thread stuck in the kernel does not keep the process
  alive at exit (concurrent.futures.ThreadPoolExecutor joins its workers at interpreter exit,
  which is what made SIGTERM and `check` hang).

And `open_regular` never blocks on open: it refuses what is not a regular file before and after
opening, and opens with O_NONBLOCK (a FIFO that appears between the two checks opens at once).
"""

from __future__ import annotations

import asyncio
import os
import queue
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, BinaryIO, ParamSpec, TypeVar

from exporter.probes import offload
from exporter.probes.base import ProbeError

READ_WORKERS = 4
STILL_RUNNING = "previous read still running"

P = ParamSpec("P")
T = TypeVar("T")


class DaemonPool(Executor):
    """A fixed-size thread pool whose workers are daemon threads (see the module doc for why)."""

    def __init__(self, workers: int, name: str) -> None:
        self._workers = workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn(*args, **kwargs)`; its Future resolves when a worker has run it."""
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.put((future, lambda: fn(*args, **kwargs)))
            if len(self._threads) < self._workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers once the queue is drained (a worker stuck in a read is left behind)."""
        with self._lock:
            self._shutdown = True
            for _ in self._threads:
                self._queue.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()


_pool: DaemonPool | None = None
_pool_lock = threading.Lock()
_running: set[tuple[str, str]] = set()
_running_lock = threading.Lock()
_skipped = 0


def pool() -> DaemonPool:
    """The report probes' pool, started on first use and shared by every report gate."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonPool(READ_WORKERS, "report-read")
        return _pool


def skipped_reads() -> int:
    """How many evaluations were skipped because the gate's previous read was still running."""
    return _skipped


def _release(key: tuple[str, str]) -> None:
    with _running_lock:
        _running.discard(key)


async def run_read(key: tuple[str, str], fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking report work in the pool; ProbeError if the same key's previous run has not ended.

    `key` is (gate id, source): a timed-out read keeps its worker until the kernel returns, and
    the next evaluation of that gate must not queue a second one behind it.
    """
    global _skipped
    with _running_lock:
        if key in _running:
            _skipped += 1
            raise ProbeError(STILL_RUNNING)
        _running.add(key)
    job = offload.Job()

    def call() -> T:
        with offload.within(job):
            return fn(*args, **kwargs)

    try:
        future = pool().submit(call)
    except BaseException:
        _release(key)
        raise
    # Released when the work ends, or when it is cancelled before it started; not when the
    # waiting coroutine gives up (a timeout), since the worker may still be blocked then.
    future.add_done_callback(lambda _: _release(key))
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        job.cancel()  # a large report's worker process is killed, so a hostile report cannot pin it
        raise
    finally:
        # An exception raised here keeps this frame in its traceback, and the future keeps the exception:
        # a cycle. Left to the collector, it is freed, unless the future was frozen while the read was in
        # flight (serve freezes at every reload: engine/pauses.py); then it never is. Before this, 5 reloads
        # of 2,000 gates (half of them missing files) left 53,049 objects frozen as garbage: 1,020 such cycles.
        del future


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    return "is not a regular file"


def open_regular(path: str, shown: str) -> BinaryIO:
    """Open a regular file for reading without ever blocking on open; ProbeError otherwise."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ProbeError(f"{shown}: {_kind_of(st.st_mode)}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise ProbeError(f"{shown}: no such file") from None
    except OSError as exc:
        raise ProbeError(f"{shown}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped for something else between stat and open
            raise ProbeError(f"{shown}: {_kind_of(mode)}")
        # O_NONBLOCK means nothing for regular files; cleared anyway so reads behave as usual.
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_limited(fh: BinaryIO, limit: int, shown: str) -> bytes:
    """All of a file's bytes, or ProbeError if there are more than `limit`."""
    try:
        data = fh.read(limit + 1)
    except OSError as exc:
        raise ProbeError(f"{shown}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ProbeError(f"{shown}: larger than {_size(limit)}")
    return data


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n} bytes"
