"""Large reports are parsed in a worker process, so that parsing never starves the event loop.

expat streams a report at constant memory, but its handlers are Python: a thread parsing a
120 MiB JUnit report holds the GIL most of its ~7 s, and the event loop beside it stalls for
seconds at a time (healthy gates time out together, scrapes wait). A thread is still cheapest for
the usual report, so only a stream of more than LARGE bytes goes to a worker:

- at most WORKERS worker processes (a python running offload.main), started on first use and
  kept; each parses one report at a time, the others wait for a free one;
- a report file is handed over as its open descriptor (SCM_RIGHTS over a socket pair: the worker
  reads the very file the probe opened, never a path that may have changed); an in-memory body
  (fetched or pushed) is sent whole;
- the parse function and its arguments are pickled: a module-level function and a frozen spec;
- when the evaluation gives up (the gate's timeout, shutdown), its worker is SIGKILLed and
  replaced on next use, so a hostile report cannot pin a worker; the calling pool thread returns
  at once (its read from the worker sees EOF);
- workers die with the exporter: killed at exit, and PR_SET_PDEATHSIG kills one whose exporter
  died without an exit (SIGKILL).

`run(fn, *args)` is called from the report pool's threads (exporter.probes.reading), which tell it
through a Job whether the evaluation is still waited for.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import pickle  # nosec B403 - only between the exporter and its own worker, over a private socket pair
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from exporter.probes import reaper
from exporter.probes.base import ProbeError

LARGE = 8 * 1024 * 1024  # smaller ones parse in a thread (under ~0.3 s of CPU: a short GIL hold, no worker start)
WORKERS = 2
PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct("!Q")

T = TypeVar("T")


class Job:
    """One evaluation's hold on a worker: cancel() kills the worker it is using, if any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self._worker: _Worker | None = None

    def attach(self, worker: _Worker | None) -> bool:
        """Use `worker` (None: stop using one); False if the evaluation is no longer waited for."""
        with self._lock:
            self._worker = worker
            return not self.cancelled

    def cancel(self) -> None:
        """The evaluation gave up: stop its worker now."""
        with self._lock:
            self.cancelled = True
            worker = self._worker
        if worker is not None:
            worker.kill()


_local = threading.local()


@contextlib.contextmanager
def within(job: Job) -> Any:
    """While the block runs, run() in this thread belongs to `job`."""
    _local.job = job
    try:
        yield
    finally:
        _local.job = None


class _FileArg:
    """Stands for a file argument in the pickled call: the descriptor travels beside it."""

    def __init__(self, position: int, name: str) -> None:
        self.position = position
        self.name = name


def size_of(stream: object) -> int | None:
    """Bytes left to read in a regular file or an in-memory stream; None for anything else."""
    try:
        if isinstance(stream, io.BytesIO):
            return len(stream.getbuffer()) - stream.tell()
        if isinstance(stream, io.BufferedReader | io.FileIO):
            st = os.fstat(stream.fileno())
            return st.st_size - stream.tell() if stat.S_ISREG(st.st_mode) else None
    except (OSError, ValueError):
        return None
    return None


def run(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args); in a worker process when one argument is a stream of more than LARGE bytes."""
    where = next((i for i, a in enumerate(args) if (n := size_of(a)) is not None and n > LARGE), None)
    if where is None:
        return fn(*args)
    job: Job = getattr(_local, "job", None) or Job()
    stream = args[where]
    fd = -1
    sent: list[Any] = list(args)
    if isinstance(stream, io.BytesIO):
        sent[where] = io.BytesIO(stream.getbuffer()[stream.tell():])
    else:
        fd = stream.fileno()
        sent[where] = _FileArg(stream.tell(), getattr(stream, "name", ""))
    worker = _acquire(job)
    healthy = False
    try:
        if not job.attach(worker):
            raise ProbeError("parse abandoned")
        ok, value = worker.call(pickle.dumps((fn, sent)), fd)
        healthy = True
    finally:
        job.attach(None)
        _release(worker, healthy)
    if ok:
        return value
    raise value


class _Worker:
    """One worker process and our end of its socket pair."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.popen = subprocess.Popen(
                # -c, not -m: the package imports this module first, and the pickled _FileArg names it
                [sys.executable, "-c", "import sys; from exporter.probes.offload import main; main(sys.argv[1:])",
                 str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(theirs.fileno(),),
                start_new_session=True,  # a terminal's Ctrl-C is the exporter's to handle, not the worker's
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reaper.own(self.popen.pid)
        self.sock = ours

    def call(self, payload: bytes, fd: int) -> tuple[bool, Any]:
        """Send one call, wait for its answer; ProbeError if the worker died (or was killed) meanwhile."""
        try:
            socket.send_fds(self.sock, [_HEADER.pack(len(payload))], [fd] if fd >= 0 else [])
            self.sock.sendall(payload)
            (size,) = _HEADER.unpack(_recv(self.sock, _HEADER.size))
            answer = pickle.loads(_recv(self.sock, size))  # nosec B301 - our own worker's answer
        except (OSError, EOFError, struct.error) as exc:
            raise ProbeError(f"report parse stopped ({type(exc).__name__})") from None
        return answer

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()

    def close(self) -> None:
        self.kill()
        self.sock.close()
        self.popen.wait()
        reaper.disown(self.popen.pid)


def _recv(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


_idle: list[_Worker] = []
_started = 0
_cond = threading.Condition()
_closed = False


def _acquire(job: Job) -> _Worker:
    global _started
    with _cond:
        while not _idle and _started >= WORKERS:
            if job.cancelled:
                raise ProbeError("parse abandoned")
            _cond.wait(0.1)
        if _closed:
            raise ProbeError("exporter shutting down")
        if _idle:
            return _idle.pop()
        _started += 1
    try:
        return _Worker()
    except BaseException:
        with _cond:
            _started -= 1
            _cond.notify()
        raise


def _release(worker: _Worker, healthy: bool) -> None:
    global _started
    if not healthy or worker.popen.poll() is not None:
        worker.close()  # killed or broken: a fresh one is started on next use
        with _cond:
            _started -= 1
            _cond.notify()
        return
    with _cond:
        if _closed:
            worker.close()
            return
        _idle.append(worker)
        _cond.notify()


def workers() -> list[int]:
    """Pids of the worker processes now idle (for tests and diagnostics)."""
    with _cond:
        return [w.popen.pid for w in _idle]


@atexit.register
def shutdown() -> None:
    """Stop the idle workers (busy ones are killed by their evaluation's cancel, or die with us)."""
    global _closed
    with _cond:
        _closed = True
        idle = list(_idle)
        _idle.clear()
    for worker in idle:
        worker.close()


# --- the worker's side --------------------------------------------------------------------------


def _serve(sock: socket.socket) -> None:
    while True:
        try:
            head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, 1)
        except OSError:
            return
        if not head:
            return  # the exporter closed its end (or died)
        if len(head) < _HEADER.size:
            head += _recv(sock, _HEADER.size - len(head))
        (size,) = _HEADER.unpack(head)
        fn, args = pickle.loads(_recv(sock, size))  # nosec B301 - sent by the exporter that started us
        files: list[io.BufferedReader] = []
        for i, arg in enumerate(args):
            if isinstance(arg, _FileArg):
                fh = os.fdopen(fds.pop(0), "rb")
                fh.seek(arg.position)
                files.append(fh)
                args[i] = fh
        try:
            answer: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller, as a thread would
            answer = (False, exc)
        finally:
            for fh in files:
                fh.close()
            for fd in fds:
                os.close(fd)
        try:
            data = pickle.dumps(answer)
        except Exception:  # noqa: BLE001 - an exception (or result) that does not pickle
            data = pickle.dumps((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]}"[:500])))
        sock.sendall(_HEADER.pack(len(data)) + data)


def main(argv: list[str]) -> None:
    """Entry of a worker process: argv is the socket's descriptor and the exporter's pid."""
    fd, parent = int(argv[0]), int(argv[1])
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return  # the exporter died before the death signal was armed
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(socket.socket(fileno=fd))
