"""Helpers for the fault tests: misbehaving loopback servers and /proc readings of a process."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web


@dataclass(frozen=True)
class ProcStats:
    """What /proc says about one process."""

    fds: int
    rss_kib: int
    peak_rss_kib: int
    threads: int
    children: tuple[int, ...]


def proc_stats(pid: int) -> ProcStats:
    """Open file descriptors, resident and peak memory, threads and direct children of `pid`."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return ProcStats(
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        rss_kib=int(status["VmRSS"].split()[0]),
        peak_rss_kib=int(status["VmHWM"].split()[0]),
        threads=int(status["Threads"].split()[0]),
        children=tuple(children_of(pid)),
    )


def children_of(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is `pid`."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def processes_with_arg(arg: str) -> list[int]:
    """Live processes with `arg` as one of their command-line arguments."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if arg.encode() in argv and state[state.rindex(")") + 2] != "Z":
            out.append(int(entry))
    return out


class FaultServer:
    """A loopback TCP server that misbehaves on purpose.

    mode "hang": accepts every connection and never answers (the connection stays open).
    mode "reset": accepts and closes at once with SO_LINGER 0, so the client sees a RST.
    """

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.held.append(conn)
                # drop connections the client has given up on, so the test process stays small
                if len(self.held) > 64:
                    for old in self.held[:32]:
                        old.close()
                    del self.held[:32]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self.held:
            conn.close()
        self.sock.close()


def until_closed(sock: socket.socket, limit: float) -> tuple[float | None, bytes]:
    """Read `sock` (plain or TLS) until the server closes it: (seconds it took, or None if it was
    still open after `limit`; every byte the server sent)."""
    sock.settimeout(0.2)
    start, got = time.monotonic(), b""
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except (ConnectionResetError, ssl.SSLError):
            return time.monotonic() - start, got
        if not chunk:
            return time.monotonic() - start, got
        got += chunk
    return None, got


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment holds `name=value` (only our own user's are readable).

    A command gate's children inherit the variables its `env` sets whatever session, group or
    parent they end up with, so a unique value finds every process a test's gates started."""
    entry_bytes = f"{name}={value}".encode()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if entry_bytes in environ and state[state.rindex(")") + 2] != "Z":
            out.append(int(entry))
    return out


def gzip_bomb(gib: int) -> bytes:
    """One gzip member that inflates to `gib` GiB of zeros, in about 2 MB per GiB, built in about a
    second instead of deflating every byte (zlib takes 9 s for 2 GiB at level 9).

    Each 16 MiB chunk of zeros is deflated with a sync flush; once the window is all zeros every
    chunk deflates to the same bytes, so that block is repeated, then closed with the member's CRC
    and size as gzip wants them."""
    chunk = bytes(1 << 24)
    count = gib * 64
    deflater = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS + 16)
    first = deflater.compress(chunk) + deflater.flush(zlib.Z_SYNC_FLUSH)
    steady = deflater.compress(chunk) + deflater.flush(zlib.Z_SYNC_FLUSH)
    final_block = deflater.flush()[:-8]  # the empty final block, without this object's own trailer
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(chunk, crc)
    return first + steady * (count - 1) + final_block + struct.pack("<II", crc, (count << 24) & 0xFFFFFFFF)


def write_huge_junit(path: Path, mib: int) -> int:
    """A JUnit report of at least `mib` MiB: one failing test case, then passing ones; returns how
    many test cases it holds (about 90 bytes each: 120 MiB is 1.4 million, written in under a second)."""
    case = b'<testcase classname="pkg.module.TestSomethingLong" name="test_case_%07d" time="0.001"/>\n'
    cases, size = 1, 0
    with open(path, "wb") as out:
        out.write(b'<?xml version="1.0" encoding="utf-8"?>\n<testsuites><testsuite name="huge">\n'
                  b'<testcase classname="pkg" name="broken"><failure message="boom">x</failure></testcase>\n')
        while size < mib << 20:
            data = b"".join(case % (cases + i) for i in range(10_000))
            out.write(data)
            size += len(data)
            cases += 10_000
        out.write(b"</testsuite></testsuites>\n")
    return cases


class LoopbackHTTP:
    """An aiohttp server on 127.0.0.1:0 in a thread of its own, answering fixed bodies per path.

    `routes` maps a path to (body, headers); anything else is a 404."""

    def __init__(self, routes: dict[str, tuple[bytes, dict[str, str]]]):
        self.routes = routes
        self.hits: dict[str, int] = dict.fromkeys(routes, 0)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        if not started.wait(30) or not self.port:
            raise RuntimeError("the loopback HTTP server did not start")

    async def _handle(self, request: web.Request) -> web.Response:
        found = self.routes.get(request.path)
        if found is None:
            return web.Response(status=404)
        self.hits[request.path] += 1
        body, headers = found
        return web.Response(body=body, headers=headers)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))  # bound here, so that its port is known without a race
        self.port = sock.getsockname()[1]
        self._loop.run_until_complete(web.SockSite(self._runner, sock).start())
        started.set()
        self._loop.run_forever()

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
