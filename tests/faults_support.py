"""Helpers for the fault tests: misbehaving loopback servers and /proc readings of a process."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path


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
