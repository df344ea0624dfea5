r"""`command` gates: run a program; exit code 0 passes; optionally a number from its stdout.

- `argv` runs a program directly (no shell); `shell` runs a string with /bin/sh -c. Exactly one.
- The working directory defaults to the config file's folder. The environment is not the
  exporter's: only PATH, HOME and LANG are inherited, and `env` is laid over them, so that
  the exporter's own secrets and settings do not leak into every command.
- The command runs in its own session (process group). When it exits, is cancelled or times
  out, the whole group is killed with SIGKILL, so background children do not pile up and a
  child that keeps stdout open cannot hang the probe. Daemons that left the group (setsid,
  double forks, nohup) are found by a marker in their environment and killed and reaped too
  (probes/reaper.py).
- Output is read to the end but only the first and last HEAD_TAIL bytes of stdout (and the last
  STDERR_TAIL bytes of stderr) are kept: a command printing gigabytes costs CPU, not memory.
  value_regex (an RE2 pattern, see probes/regex.py) searches the kept stdout, so a summary
  line at either end is found. Its first
  capture group (the whole match if it has none) is the value; a `%` ending the capture or
  right after it divides by 100, so both `(\d+%)` and `(\d+)%` read "87%" as 0.87.
- With `shell`, exit codes 127 and 126 are the shell's "command not found" / "not executable":
  they are errors (no measurement), not failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from exporter.config.fields import FilePath, Regex, opt
from exporter.probes import reaper, regex
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind

HEAD_TAIL = 512 * 1024
STDERR_TAIL = 16 * 1024
INHERITED_ENV = ("PATH", "HOME", "LANG")
# After the command exits, how long its pipes may take to reach EOF before we stop reading.
PIPE_GRACE = 0.5
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Options of a `command` gate."""

    argv: list[str] | None = opt(None, doc="Program and arguments, run without a shell.")
    shell: str | None = opt(None, doc="A command line run by /bin/sh -c (use argv unless you need a shell).")
    cwd: FilePath | None = opt(None, doc="Working directory (default: the config file's folder).")
    env: dict[str, str] = opt(default_factory=dict, doc="Environment variables, over PATH, HOME and LANG.")
    value_regex: Regex | None = opt(None, doc="Searched in stdout; its first capture group is the value "
                                              "(a trailing % divides by 100).")

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field checks."""
        out: list[tuple[str, str]] = []
        if self.argv is None and self.shell is None:
            out.append(("", "needs argv (a list) or shell (a string)"))
        elif self.argv is not None and self.shell is not None:
            out.append(("shell", "use either argv or shell, not both"))
        elif self.argv is not None and (not self.argv or not self.argv[0]):
            out.append(("argv", "must name a program"))
        elif self.shell is not None and not self.shell.strip():
            out.append(("shell", "must not be empty"))
        out.extend(("env", f"invalid variable name {name!r}") for name in self.env if not _ENV_NAME.match(name))
        return out


class _Capture:
    """Keeps the first and last `size` bytes of a stream, dropping the middle."""

    def __init__(self, head: int, tail: int):
        self.head_size, self.tail_size = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.head_size - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self.tail += chunk
        if len(self.tail) > self.tail_size:
            cut = len(self.tail) - self.tail_size
            self.dropped += cut
            del self.tail[:cut]

    def data(self) -> bytes:
        return bytes(self.head) + (b"\n" if self.dropped else b"") + bytes(self.tail)

    def text(self) -> str:
        return self.data().decode("utf-8", "replace")


class _Pipe:
    """A pipe whose read end the event loop drains into a _Capture while the command runs."""

    def __init__(self, capture: _Capture):
        self.capture = capture
        self.write_fd = -1
        self.transport: asyncio.BaseTransport | None = None
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        read_fd, self.write_fd = os.pipe()
        reader = asyncio.StreamReader(limit=64 * 1024)
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        try:
            self.transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        except BaseException:
            # Through the file object: the transport may close it again later, which is then a no-op,
            # whereas os.close() here would make that later close hit a reused descriptor.
            pipe.close()
            raise
        self.task = asyncio.ensure_future(self._drain(reader))

    async def _drain(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(64 * 1024):
            self.capture.feed(chunk)

    def close_write(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_write()
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.close()
        # Let go of both: a cancelled drain keeps its CancelledError, whose traceback holds _drain's frame
        # and so this pipe; holding the task here would close a cycle, never freed if it was frozen while
        # the command ran (serve freezes at each reload: engine/pauses.py).
        self.task = self.transport = None


def base_env() -> dict[str, str]:
    """The part of the exporter's environment a command inherits."""
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env


async def probe(spec: CommandSpec, ctx: ProbeContext) -> Measurement:
    """Run the command to its end; a non-zero exit code fails the gate."""
    argv = list(spec.argv) if spec.argv is not None else ["/bin/sh", "-c", spec.shell or ""]
    cwd = spec.cwd or ctx.base_dir or os.getcwd()
    if not os.path.isdir(cwd):
        raise ProbeError(f"cwd {cwd}: no such directory")
    stdout, stderr = _Pipe(_Capture(HEAD_TAIL, HEAD_TAIL)), _Pipe(_Capture(0, STDERR_TAIL))
    try:
        await stdout.open()
        await stderr.open()
        reaper.enable_subreaper()
        token, since = reaper.new_token(), reaper.clock_ticks()
        # From the token on, every path out (a cancellation at any await included) kills and reaps the
        # run's processes: the spawn itself has no await, so no cancellation falls between the fork and
        # the leader's registration.
        try:
            start = time.perf_counter()
            try:
                leader = _Leader.spawn(argv, cwd, base_env() | dict(spec.env) | {reaper.MARKER: token},
                                       stdout.write_fd, stderr.write_fd)
            finally:
                # Only the child may hold the write ends, so EOF means every writer is gone.
                stdout.close_write()
                stderr.close_write()
            try:
                code = await leader.wait()
                duration = time.perf_counter() - start
            finally:
                await leader.kill_group()
        finally:
            # Shielded: a cancelled evaluation (timeout, shutdown) still ends and reaps the daemons.
            await asyncio.shield(reaper.reap(reaper.kill_run(token, since)))
        tasks = [t for t in (stdout.task, stderr.task) if t is not None]
        await asyncio.wait(tasks, timeout=PIPE_GRACE)
    finally:
        stdout.close()
        stderr.close()
    return await _measure(spec, ctx, code, duration, stdout.capture.data(), stderr.capture.text())


class _Leader:
    """The command's first process, forked without an await and reaped by us (through a pidfd the loop
    watches), not by asyncio's child watcher: it is a registered leader from the instant it exists, so no
    run's kill_run can reap it and take its exit status, and no cancellation can lose it."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = -1
        with contextlib.suppress(OSError, AttributeError):
            self.pidfd = os.pidfd_open(popen.pid)

    @classmethod
    def spawn(cls, argv: list[str], cwd: str, env: dict[str, str], out_fd: int, err_fd: int) -> _Leader:
        """Start the command in a session of its own (synchronously, as asyncio itself does)."""
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_fd, stderr=err_fd, cwd=cwd, env=env,
                                     start_new_session=True, close_fds=True)
        except FileNotFoundError:
            raise ProbeError(f"command not found: {argv[0]}") from None
        except PermissionError:
            raise ProbeError(f"{argv[0]}: permission denied") from None
        except OSError as exc:
            raise ProbeError(f"{argv[0]}: {exc.strerror or exc}") from None
        reaper.own(popen.pid)
        return cls(popen)

    async def wait(self) -> int:
        """The exit code (negative: the signal), once the leader has exited and been reaped."""
        delay = 0.001
        while (code := self.popen.poll()) is None:
            if self.pidfd >= 0:
                await _readable(self.pidfd)  # a pidfd turns readable when the process exits
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        return code

    async def kill_group(self) -> None:
        """SIGKILL the command's whole process group and reap the leader, even while being cancelled."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The group id is the leader's pid; the kernel does not hand that id to a new process
            # while any member of the group lives, and the leader is reaped only below if at all.
            os.killpg(self.pid, signal.SIGKILL)
        # Shielded: if we are cancelled again meanwhile, the leader is still reaped and released.
        await asyncio.shield(self._release())

    async def _release(self) -> None:
        try:
            await self.wait()
        finally:
            if self.popen.returncode is not None:
                reaper.disown(self.pid)
                if self.pidfd >= 0:
                    os.close(self.pidfd)
                    self.pidfd = -1


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _measure(spec: CommandSpec, ctx: ProbeContext, code: int, duration: float, out: bytes,
                   err: str) -> Measurement:
    values = {"exit_code": float(code), "duration": duration, "value": float(code)}
    last_err = next((line.strip() for line in reversed(err.splitlines()) if line.strip()), "")
    if spec.shell is not None and code in (126, 127):
        reason = "command not found" if code == 127 else "command not executable"
        raise ProbeError(f"{reason} (exit {code}){': ' + last_err[:200] if last_err else ''}")
    match = None
    if spec.value_regex:
        match = await regex.search(spec.value_regex, out, gate_id=ctx.gate_id, what="value_regex",
                                   timeout=max(ctx.timeout - duration, 0.001))
    if code != 0:
        if match:
            with contextlib.suppress(ProbeError):  # the exit code already says what went wrong
                values["value"] = _number(match)
        message = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        return Measurement(values, ok=False, message=f"{message}: {last_err[:200]}" if last_err else message)
    if spec.value_regex:
        if not match:
            raise ProbeError(f"value_regex '{spec.value_regex}' did not match the output")
        values["value"] = _number(match)
    return Measurement(values)


def _number(match: Any) -> float:
    """The value of an re2 match on bytes: its first group (or the whole match), `%` dividing by 100."""
    group = 1 if match.re.groups else 0
    raw = match[group]
    if raw is None:
        raise ProbeError("value_regex matched but its first group captured nothing")
    # `(\d+)%` means a percentage as much as `(\d+%)` does: both divide by 100.
    percent_follows = match.string[match.end(group):match.end(group) + 1] == b"%"
    text = raw.decode("utf-8", "replace").strip()
    scale = 0.01 if percent_follows else 1.0
    if text.endswith("%"):
        text, scale = text[:-1].strip(), 0.01
    try:
        return float(text) * scale
    except ValueError:
        raise ProbeError(f"value_regex captured {text[:40]!r}, not a number") from None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


KIND = ProbeKind("command", CommandSpec, probe, ("value", "exit_code", "duration"), timeout_outcome="fail",
                 doc="A command exits 0 (and prints a value).")
