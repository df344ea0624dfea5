"""Every process a `command` gate started ends with its evaluation, daemons included.

Killing the command's process group is not enough: `setsid sleep 4242 &`, a double fork or
`nohup` leave that group (or the session) and would pile up, one per interval, and outlive the
exporter. So:

- each run's environment carries a marker, QG_PROBE_ID=<unique token>, which every descendant
  inherits whatever session, group or parent it ends up with;
- the exporter makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER, Linux): orphans
  are re-parented to it instead of init, so it can reap them (and inside a container where the
  exporter is PID 1 they come to it anyway);
- after the command ended, timed out or was cancelled, /proc is scanned: every live process that
  carries the run's marker, or descends from one that does (a child that cleared its environment),
  is killed with SIGKILL through a pidfd opened before the marker was read (so a recycled pid is
  never hit), and rescanned until none is left;
- then exactly those processes are reaped with waitpid(pid), and so are zombies of ours that
  were born during the run and are no command's leader (an orphan that exited before the scan:
  its environment went with it). Never a blanket waitpid(-1), which would steal the children
  that their starters wait for (command leaders, the report parse workers: see own()).
- at exit, kill_all sweeps every process carrying any of this exporter's markers (the token's
  prefix is our pid), whatever a cancelled evaluation could not finish.

Not covered: a descendant that both cleared its environment and was orphaned before the scan
(nothing ties it to the run any more), and processes left behind when the exporter itself is
killed with SIGKILL. A cgroup per run would close both; it needs a delegated cgroup v2 tree,
which the exporter does not assume (most containers have none).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import functools
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

MARKER = "QG_PROBE_ID"
PR_SET_CHILD_SUBREAPER = 36
SCAN_ROUNDS = 10  # a daemon forking while it is being killed needs another round; each finds fewer
REAP_WAIT = 2.0  # seconds to wait for killed processes to die and reach us (SIGKILL is prompt)


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int  # start time in clock ticks since boot: with the pid, names one process for good


@functools.cache
def libc() -> ctypes.CDLL:
    # The C library, kept: a CDLL is a reference cycle (its function cache), left to the cyclic GC once dropped; dropped
    # while serve froze the collector's objects (engine/pauses.py), it would never be freed.
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def enable_subreaper() -> bool:
    """Make this process a child subreaper (once); False where the platform has no prctl."""
    try:
        return bool(libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def new_token() -> str:
    """A marker value unique to one run (its prefix names this exporter: see kill_all)."""
    _at_exit()
    return f"{os.getpid()}-{secrets.token_hex(8)}"


@functools.cache
def _at_exit() -> None:
    # The last word: whatever an evaluation cancelled at shutdown could not finish, no process a
    # command started outlives the exporter.
    atexit.register(kill_all)


def kill_all() -> int:
    """Kill and reap every process that carries a marker of this exporter (any run's); how many were killed."""
    me = os.getpid()
    prefix = f"\0{MARKER}={me}-".encode()
    killed: dict[int, _Proc] = {}
    for _ in range(SCAN_ROUNDS):
        procs = _scan()
        signalled = [p for p in procs.values()
                     if p.pid != me and p.state != "Z" and _has_marker(p.pid, prefix) and _kill(p, prefix)]
        if not signalled:
            break
        killed.update((p.pid, p) for p in signalled)
    deadline = time.monotonic() + REAP_WAIT
    pending = {pid: p for pid, p in killed.items() if pid not in _leaders}
    while pending and time.monotonic() < deadline:
        for pid, proc in list(pending.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (or reaped already): init reaps it once it died
                done = pid
            if done == pid or not _same(proc):
                del pending[pid]
        if pending:
            time.sleep(0.005)
    return len(killed)


def clock_ticks() -> int:
    """Now, in the unit of a process's start time in /proc/PID/stat (clock ticks since boot), minus
    one tick of slack: processes started from now on have a start time at or after it."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK")) - 1


# The processes that are someone's to reap (command leaders, parse workers): never reap one here.
_leaders: set[int] = set()


def own(pid: int) -> None:
    """`pid` is a child its starter waits for: kill_run never reaps it (until disown)."""
    _leaders.add(pid)


def disown(pid: int) -> None:
    """`pid` was reaped by its starter."""
    _leaders.discard(pid)


@contextlib.contextmanager
def leader(pid: int) -> Iterator[None]:
    """While the block runs, `pid` is a command leader that someone else reaps (kill_run leaves it)."""
    own(pid)
    try:
        yield
    finally:
        disown(pid)


def _scan() -> dict[int, _Proc]:
    """The processes that may belong to a run: with the subreaper on, every survivor of a run is in
    our own process tree (a walk of /proc/PID/task/TID/children, cheap); else all of /proc."""
    if enable_subreaper() and os.path.exists(f"/proc/self/task/{threading.get_native_id()}/children"):
        return _tree(os.getpid())
    procs: dict[int, _Proc] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return procs
    for name in names:
        if name.isdigit() and (proc := _scan_one(int(name))) is not None:
            procs[proc.pid] = proc
    return procs


def _tree(root: int) -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            for kid in kids:
                if kid not in procs and (proc := _scan_one(kid)) is not None:
                    procs[kid] = proc
                    stack.append(kid)
    return procs


def _scan_one(pid: int) -> _Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) < 20:
        return None
    return _Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0].decode(), int(fields[19]))


def _same(proc: _Proc) -> bool:
    """Whether `proc` (as scanned) is still the process that holds its pid."""
    now = _scan_one(proc.pid)
    return now is not None and now.start == proc.start


def _environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _has_marker(pid: int, needle: bytes) -> bool:
    env = _environ(pid)
    return env is not None and needle in b"\0" + env + b"\0"


def _kill(proc: _Proc, needle: bytes | None) -> bool:
    """SIGKILL `proc` if it is still that process (and carries `needle`, unless None); True if signalled.
    The pidfd is opened first, so the checks and the signal are about one process, even if the pid
    is recycled meanwhile."""
    pidfd = -1
    with contextlib.suppress(OSError, AttributeError):
        pidfd = os.pidfd_open(proc.pid)
    try:
        if not _same(proc) or (needle is not None and not _has_marker(proc.pid, needle)):
            return False
        if pidfd >= 0:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        return True
    except OSError:
        return False
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def kill_run(token: str, since: int) -> dict[int, _Proc]:
    """Kill every live process of the run marked `token` (started at `since`, see clock_ticks);
    the processes to reap (killed ones, their descendants, the run's zombies) are returned."""
    needle = f"\0{MARKER}={token}\0".encode()
    me = os.getpid()
    tracked: dict[int, _Proc] = {}
    before: set[tuple[int, int]] | None = None
    for _ in range(SCAN_ROUNDS):
        procs = _scan()
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        marked = [p.pid for p in procs.values() if p.pid != me and p.state != "Z" and _has_marker(p.pid, needle)]
        # Descendants of marked processes are the run's even if they cleared their environment.
        stack, family = list(marked), set(marked)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in family and child != me:
                    family.add(child)
                    stack.append(child)
        # Orphans of the run that died before this scan (their environment is gone with them):
        # zombies of ours born during the run that are no command's leader (their starter reaps those).
        orphans = [p for p in procs.values() if p.ppid == me and p.start >= since and p.pid not in _leaders]
        family.update(p.pid for p in orphans if p.state == "Z")
        tracked.update((pid, procs[pid]) for pid in family)
        signalled = [pid for pid in family
                     if procs[pid].state != "Z" and _kill(procs[pid], needle if pid in marked else None)]
        # Done only when a round killed nothing and saw what the one before saw: a process whose parent
        # died during the walk moves to us after our own children were listed (missed this round), and
        # one in the middle of an exec shows an empty environment (no marker yet) for a moment.
        now = {(p.pid, p.start) for p in orphans} | {(pid, procs[pid].start) for pid in family}
        unsure = any(p.state != "Z" and p.pid not in family and not _environ(p.pid) for p in orphans)
        if not signalled and not unsure and now == before:
            break
        before = now
        if unsure:
            time.sleep(0.001)  # an exec takes about a millisecond; rare, and bounded by SCAN_ROUNDS
    return tracked


async def reap(procs: dict[int, _Proc]) -> int:
    """waitpid() each of `pids` that is (or becomes, once its parent died) our child; how many were reaped.
    Gives up after REAP_WAIT on processes that do not die (uninterruptible sleep)."""
    pending, reaped = dict(procs), 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAP_WAIT
    delay = 0.001
    while pending:
        for pid, proc in list(pending.items()):
            if not _same(proc):  # gone (reaped by its parent of the run), or the pid names another process now
                del pending[pid]
                continue
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # killed, still under a dying parent of the run; then re-parented to us
            if done == pid:
                del pending[pid]
                reaped += 1
        if not pending or loop.time() >= deadline:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return reaped

