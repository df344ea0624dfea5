"""`serve` loads its config files in a forked child, which sends back only the finished configs.

Why: a 10,000-gate config is ~130,000 YAML nodes plus scratch, freed once the `Config` exists, but
leaving ~40 MB of CPython arenas in the process that parsed it (every arena keeps a few objects that
live on between the freed ones). Parsed in a child, none of it exists in the server. Measured at
10,000 gates (a real serve, fresh processes): 99.1 MB RSS after the first load in-process, 83.9 MB
this way; after 3 reloads 152.8 MB vs 133.1 MB. It also moves the parse (~0.6 s) to another core: at
start the server imports what it needs meanwhile, and during a reload the parse leaves the GIL alone.

How:
- `os.fork()`; the child runs the loader it is given (`exporter.config.files.load_configs`), pickles
  the list of `Config`, or the `ConfigError`'s issues, or whatever else it raised, to a pipe, and ends
  with `os._exit`: it never returns into the server's code, runs no atexit handler and flushes no
  buffer it inherited. It logs nothing and writes nothing but the pipe.
- The parent reads the pipe to its end (the child cannot block on a full pipe), reaps the child with
  `os.waitpid` (registered with the probe reaper meanwhile, so a command gate's clean-up never takes
  it) and unpickles, BATCH gates per call with the GIL offered in between (see loads). A child
  killed by a signal, ending non-zero, without a whole result, or running past DEADLINE (then
  SIGKILLed) is a `LoadChildError`: serve's start says it on one line (exit 2), a reload fails
  and the running config stays (Runtime.reload's error path).
- Fork with threads (a fork falls back from a reload's fresh process, below; at start-up it comes
  before any thread exists): only the forking thread exists in the child, so a lock another thread
  held stays held there. The child touches nothing such a lock guards: it parses text and builds
  dataclasses with modules already imported (no import lock); malloc's locks are reset by glibc,
  the GIL by CPython, logging's by logging (3.11), and it does not log. It puts the signals the
  server handles back to default, drops the loop's wakeup descriptor it shares with the server, and
  closes every other inherited descriptor but the pipe (a connection the server closes must end).
- Not everything pickles: a `MappingProxyType` (mapping fields) is sent as its dict; RE2 patterns
  (`fields.Pattern`) as their source, compiled once on arrival. If a result still does not pickle,
  or there is no fork (not POSIX), the config is loaded in-process from then on, said once in the
  log with the reason. A fork that fails (EAGAIN, ENOMEM) loads in-process that time.

Reloads start a fresh process instead of forking (`fresh=True`, from Runtime.reload): at 10,000
gates the server's heap is ~150 MB, and while a forked child lives (~1 s) every page the server
writes (refcounts, GC headers) is first copied: walking every object took 264-311 ms with a child
alive vs 89-97 ms after, i.e. slow scrapes right after the SIGHUP. A fresh interpreter
(`sys.executable -I -c BOOT -- PATH...`, close_fds, default signals) shares no page and costs
~0.1-0.2 s of imports on the other core. Its command line holds only the configured paths (serve's
own flags); its environment is the server's os.environ, which ${VAR}s expand from. On its stdin it
gets the server's sys.path (a source checkout, a test's path, an installed package alike) and the
fingerprint of the server's code (config.files.code_fingerprint): after an upgrade on disk the
fresh process would be another version, whose pickles land in the server's classes field by
position, so it declines. The answer comes on its stdout with the forked child's protocol,
deadline, kill, reap and errors. Only config.files.load_configs runs there (tests' own loaders
fork). If it cannot start, or ends before our code ran (an exit code but 0 and 70: cannot import,
another version, a broken or frozen interpreter), reloads fork from then on (said once in the log).
Start-up keeps the fork: the heap is small then, and a fork is faster than new imports.

Only `serve` loads this way (`enable()`): `validate`, `check`, the rest and tests' runtimes in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import select
import signal
import subprocess  # nosec B404 - a fresh python of our own, fixed argv
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from exporter.config.files import code_fingerprint
from exporter.config.issues import ConfigError, Issue
from exporter.config.wire import _HEADER, _drain, _load_steps, dumps
from exporter.config.yamlload import gc_paused

if TYPE_CHECKING:
    from exporter.config.model import Config

log = logging.getLogger("qualitygate")

Loader = Callable[[list[str]], "list[Config]"]
DEADLINE = 300.0  # seconds a child may take (10,000 gates: ~1 s); then it is killed and the load fails
_MAX_FD = 1 << 20  # closerange() past the highest descriptor: Linux closes them in one call (close_range)

_enabled = False  # set by serve
_in_process: str | None = None  # why configs load in-process for good (said once), or None
_no_fresh: str | None = None  # why reloads fork instead of starting a fresh process (said once), or None
_CHILD_FAILED = 70  # a child's exit code when it could not send its answer
_CANNOT_IMPORT = 78  # a fresh process's exit code when it cannot import exporter (its stdout: why)
# A reload's fresh process (and the fork it falls back to) runs this much nicer than the server: its
# parse (~1 s of CPU at 10,000 gates) gives way to the scrapes and evaluations it would otherwise take
# a core from. On 2 busy cores (the server, its scraper, the parse) scrapes 2-3 s into a reload took
# 60-90 ms, with the event loop idle and waiting to be run (a callback timer and the selector's own
# time in a real serve); the reload takes longer instead, and only when the CPUs are busy.
RELOAD_NICENESS = 10
# A fresh process's program: nicer, the server's sys.path from stdin (one JSON line), then the child's own code.
BOOT = ("import os, sys\n"
        f"os.nice({RELOAD_NICENESS})\n"
        "try:\n"
        "    import json; sent = json.loads(sys.stdin.readline()); sys.path[:] = sent['path']\n"
        "    from exporter.config.apart import fresh_main\n"
        "    from exporter.config.files import code_fingerprint\n"
        "    if code_fingerprint() != sent['code']:\n"
        "        raise ImportError('the exporter on disk is not the code this server runs (upgraded?)')\n"
        "except BaseException as exc:\n"
        "    sys.stdout.write(f'{type(exc).__name__}: {exc}'[:500]); sys.stdout.flush()\n"
        f"    sys.exit({_CANNOT_IMPORT})\n"
        "fresh_main(sys.argv[2:])\n")


class LoadChildError(Exception):
    """The child that loaded the config died, or ended without a whole result."""


def enable(on: bool = True) -> None:
    """Load in a child from now on (serve); off: in-process, as every other command does."""
    global _enabled
    _enabled = on
    if on:
        code_fingerprint()  # of the code as the server starts: a reload's fresh process must run the same


def load(paths: list[str], loader: Loader, fresh: bool = False) -> list[Config]:
    """The configs of `paths` as `loader` (config.files.load_configs) gives them: in a child once enabled (see
    the module's doc), a fresh process if `fresh` (reloads), else in-process. Raises what the loader raised,
    or LoadChildError."""
    return start(paths, loader, fresh).result()


def start(paths: list[str], loader: Loader, fresh: bool = False) -> Pending:
    """Start loading `paths` (forks or spawns now, when enabled); `.result()` waits for the configs."""
    return Pending(list(paths), loader, fresh)


def _spawn(argv: list[str], stdin: int, stdout: int) -> subprocess.Popen[bytes]:
    """The fresh process (a seam for tests: they record what was started). Its environment is os.environ,
    which ${VAR}s expand from in-process (config.fields.Reader.env), not the C environ it may differ from."""
    return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL,  # nosec B603
                            close_fds=True, restore_signals=True, env=os.environ)


class Pending:
    """A load under way in a child (or to be done in-process, by result())."""

    def __init__(self, paths: list[str], loader: Loader, fresh: bool = False):
        self.paths, self.loader = paths, loader
        self.pid = 0
        self._fd = -1
        self._reaper: Any = None
        self._proc: subprocess.Popen[bytes] | None = None
        if _enabled and _in_process is None:
            if fresh and _no_fresh is None and loader is _files_loader():
                self._spawn()
            if self._fd < 0:
                self._fork(nicer=fresh)  # a reload's fallback: nicer, as the fresh process is

    def _spawn(self) -> None:
        if getattr(sys, "frozen", False) or not sys.executable:
            _no_fresh_for_good("no Python interpreter to start (a frozen binary)")
            return
        argv = [sys.executable, "-I", "-X", f"utf8={sys.flags.utf8_mode}", "-c", BOOT, "--", *self.paths]
        # Import finds only str entries; a few hundred bytes, which the child reads first thing.
        sent = json.dumps({"path": [p for p in sys.path if isinstance(p, str)], "code": code_fingerprint()})
        r, w = os.pipe()
        ri, wi = os.pipe()
        try:
            self._proc = _spawn(argv, ri, w)
        except Exception as exc:  # noqa: BLE001 - whatever stops the start, reloads fork from now on
            os.close(r)
            os.close(wi)
            _no_fresh_for_good(f"cannot start {sys.executable}: {exc}")
            return
        finally:
            os.close(w)
            os.close(ri)
        self._reaper = sys.modules.get("exporter.probes.reaper")
        if self._reaper is not None:
            self._reaper.own(self._proc.pid)
        self.pid, self._fd = self._proc.pid, r
        try:  # a few hundred bytes (it reads them first thing, in any case)
            view = memoryview(sent.encode() + b"\n")
            while view:
                view = view[os.write(wi, view):]
        except BrokenPipeError:
            pass  # it died already: result() says how
        finally:
            os.close(wi)

    def _fork(self, nicer: bool = False) -> None:
        if not hasattr(os, "fork"):
            _for_good("this system has no fork()")
            return
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(r)
            os.close(w)
            log.warning("config loads in-process this time: cannot fork", extra={"reason": str(exc)})
            return
        if pid == 0:  # the child: never leaves _child
            os.close(r)
            _child(w, self.paths, self.loader, RELOAD_NICENESS if nicer else 0)
        # Ours to reap: a command gate's clean-up must not take it. No reaper loaded yet: no command ran,
        # and importing it (every probe kind) would hold up the fork at start-up.
        self._reaper = sys.modules.get("exporter.probes.reaper")
        if self._reaper is not None:
            self._reaper.own(pid)
        os.close(w)
        self.pid, self._fd = pid, r

    def ready(self) -> bool:
        """Whether result() would not wait for the child (its result, or its end, is there)."""
        if self._fd < 0:
            return True
        return _readable(self._fd, 0)

    def result(self) -> list[Config]:
        """The configs; raises the loader's ConfigError (or other exception), or LoadChildError."""
        got = self.collect()
        if isinstance(got, list):
            return got
        configs = _drain(got.steps())
        return configs if configs is not None else self.loader(self.paths)

    def collect(self) -> list[Config] | Answer:
        """Wait for the child's answer and reap it (blocking: a thread's work). The configs themselves when
        they were loaded in-process (no child, or a fresh process that could not run our code), else the
        answer, read back by its steps()."""
        if self._fd < 0:
            return self.loader(self.paths)
        try:
            data = self._read()
        finally:
            status = self._reap()
        if self._proc is not None and status is not None and os.WIFEXITED(status) \
                and os.WEXITSTATUS(status) not in (0, _CHILD_FAILED):
            # Our code never ran there (it answers, or ends 70): an interpreter that cannot start (exit 1,
            # a usage error of a frozen binary) or cannot import exporter (BOOT's 78, its stdout says why).
            _no_fresh_for_good(f"a fresh process could not run the loader (exit {os.WEXITSTATUS(status)}): "
                               f"{data[:500].decode(errors='replace')}")
            return load(self.paths, self.loader)  # forked, this time and from now on
        return Answer(data, status, self.pid, self.paths, self.loader)

    def _read(self) -> bytes:
        chunks: list[bytes] = []
        deadline = time.monotonic() + DEADLINE
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not _readable(self._fd, left):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    raise LoadChildError(f"loading the config took more than {DEADLINE:g} s (the loading "
                                         f"process was killed)")
                chunk = os.read(self._fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            self._fd = -1

    def _reap(self) -> int | None:
        """The child's wait status (None if it was reaped elsewhere); it never stays a zombie."""
        try:
            while True:
                try:
                    return os.waitpid(self.pid, 0)[1]
                except InterruptedError:
                    continue
                except ChildProcessError:
                    return None
        finally:
            if self._reaper is not None:
                self._reaper.disown(self.pid)
            if self._proc is not None:
                self._proc.returncode = -1  # reaped here: Popen must not wait for it again

    def cancel(self) -> None:
        """Give up on the load: the child is killed and reaped."""
        if self._fd >= 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            os.close(self._fd)
            self._fd = -1
            self._reap()


def _readable(fd: int, timeout: float) -> bool:
    poll = select.poll()  # not select(): a busy server's descriptors pass FD_SETSIZE (1024)
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(timeout * 1000))


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a child sent back, and how it ended."""

    data: bytes
    status: int | None  # its wait status (None: reaped elsewhere)
    pid: int
    paths: list[str]
    loader: Loader

    def steps(self) -> Generator[None, None, list[Config] | None]:
        """The child's result as the loader would have returned (or raised) it in-process, read back a batch
        of gates per step (load_sliced() runs the steps on the event loop, result() in its thread). None: it
        could not be sent, and the caller loads in-process (in a thread, never on the loop: ~1 s of CPU)."""
        status, pid, data = self.status, self.pid, self.data
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            raise LoadChildError(f"the process loading the config (pid {pid}) was killed by signal {sig} "
                                 f"({_signal_name(sig)})")
        if status is not None and os.waitstatus_to_exitcode(status) != 0:
            raise LoadChildError(f"the process loading the config (pid {pid}) exited "
                                 f"{os.waitstatus_to_exitcode(status)} without a result")
        if len(data) < _HEADER.size or _HEADER.unpack_from(data)[0] != len(data) - _HEADER.size:
            raise LoadChildError(f"the process loading the config (pid {pid}) ended without a whole result "
                                 f"({len(data)} bytes)")
        try:
            with gc_paused():  # ~130,000 acyclic objects arrive: each collection would walk them again
                kind, value = yield from _load_steps(memoryview(data)[_HEADER.size:])
        except Exception as exc:  # noqa: BLE001 - e.g. an exception class that cannot be rebuilt from its pickle
            raise LoadChildError(f"the config loaded in a child could not be read back: {type(exc).__name__}: "
                                 f"{exc}"[:500]) from None
        if kind == "ok":
            return list(value)
        if kind == "config":
            raise ConfigError([Issue(*i) for i in value])
        if kind == "raised":
            raise value
        _for_good(f"the loaded config cannot be sent from a child: {value}")
        return None


async def load_sliced(paths: list[str], loader: Loader, fresh: bool = False, budget: float = 0.001,
                      turn: Callable[[], Awaitable[None]] | None = None) -> list[Config]:
    """load(), for a running server: the child is started and waited for in a thread, and what it sent is read
    back on the event loop, in slices of `budget` seconds between which the loop serves scrapes.

    Why not in the thread, too: unpickling holds the GIL for a batch at a time, and every time the loop's
    thread gave the GIL up (a socket call, the selector) it waited for the reader's batch, then for the
    switch interval. Scrapes while 10,000 gates were read back took 26-37 ms (a callback timer in a real
    serve: 7.5 ms of CPU in a 26 ms scrape); in slices on the loop itself there is nothing to wait for.
    `turn` is how a slice gives the loop its turn (serve: one that waits for the requests in flight)."""
    pending = await asyncio.to_thread(start, paths, loader, fresh)
    got = await asyncio.to_thread(pending.collect)
    if isinstance(got, list):
        return got
    steps, t0 = got.steps(), time.perf_counter()
    try:
        while True:
            try:
                next(steps)
            except StopIteration as done:
                configs: list[Config] | None = done.value
                break
            if time.perf_counter() - t0 > budget:
                await (turn() if turn is not None else asyncio.sleep(0))
                t0 = time.perf_counter()
    finally:
        steps.close()  # cancelled mid-way: the generator's gc_paused() ends now, not when it is collected
    return configs if configs is not None else await asyncio.to_thread(got.loader, got.paths)


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return "unknown"


def _files_loader() -> Loader:
    from exporter.config.files import load_configs

    return load_configs


def _no_fresh_for_good(reason: str) -> None:
    global _no_fresh
    if _no_fresh is None:
        _no_fresh = reason
        log.warning("config reloads fork from now on, not a fresh process", extra={"reason": reason})


def _for_good(reason: str) -> None:
    global _in_process
    if _in_process is None:
        _in_process = reason
        log.warning("config files load in-process from now on", extra={"reason": reason})


# --- the child ---------------------------------------------------------------------------------


def fresh_main(paths: list[str]) -> None:
    """A fresh process's work (BOOT): load `paths`, answer on stdout as a forked child does."""
    _child(1, paths, _files_loader())


def _child(w: int, paths: list[str], loader: Loader, niceness: int = 0) -> None:
    """Load, send, _exit: whatever happens, this never returns."""
    code = _CHILD_FAILED
    try:
        with contextlib.suppress(Exception):
            if niceness:
                os.nice(niceness)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
        # The server's sockets and files: a connection the server closes meanwhile must end now, not when the
        # child does (the child's copy would keep it open), and the listening port must not outlive the server.
        os.closerange(3, w)
        os.closerange(w + 1, _MAX_FD)
        gc.freeze()  # the server's objects are not walked (nor copied) by the child's collections
        result: tuple[str, object]
        try:
            result = ("ok", loader(paths))
        except ConfigError as exc:
            result = ("config", [(i.file, i.line, i.key, i.message) for i in exc.issues])
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
            result = ("raised", exc)
        try:
            data = dumps(result)
        except BaseException as exc:  # noqa: BLE001 - a result (or exception) that does not pickle
            if result[0] == "raised":
                data = dumps(("raised", RuntimeError(f"{type(result[1]).__name__}: {result[1]}"[:500])))
            else:
                data = dumps(("unpicklable", f"{type(exc).__name__}: {exc}"[:500]))
        view = memoryview(data)
        while view:
            view = view[os.write(w, view):]
        code = 0
    finally:
        os._exit(code)
