"""One HTTP request of an `http` probe: a fresh connection per request, redirects, one deadline.

Why not aiohttp here: its client machinery cost about 0.35 ms of CPU per fresh-connection request,
more than the whole evaluation may cost (issue 17: 0.3x of blackbox_exporter's ~0.8 ms per probe).
A plain http request is a non-blocking socket driven by the loop's reader and writer callbacks,
with no transport, stream or task of its own; https goes through asyncio's TLS transport. Either
way the bytes are framed and bounded by probes/httpwire.py, and one deadline bounds everything,
name resolution and redirects included (TimeoutError).

Failures raise WireError with the gate's message: `connection refused`, `TLS: certificate verify
failed: ...` (probes/net.py), `cannot resolve host x`, `too many redirects`, `invalid URL in redirect`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

import yarl

from exporter.probes.httpwire import Response, Sink, Target, WireError, request_bytes, target
from exporter.probes.net import describe_os_error

MAX_REDIRECTS = 10  # the 10th redirect answer is an error, as aiohttp and Go's client count
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DNS_TTL = 10.0  # seconds a resolved name is reused (aiohttp's default too)
DNS_ENTRIES = 1024
RECV = 64 * 1024
_dns: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}


async def fetch(method: str, url: str, headers: Mapping[str, str], body: bytes | None, *, timeout: float,
                follow_redirects: bool, tls: Callable[[], ssl.SSLContext],
                sink: Callable[[int, dict[str, str]], Sink]) -> Response:
    """Request `url` (following redirects if asked) and read the final answer's body into
    `sink(status, headers)`. `tls()` gives the context for https hops. Raises WireError or TimeoutError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    where = target(url)
    headers = dict(headers)
    redirects = 0

    def on_head(status: int, got: dict[str, str]) -> Sink | None:
        if follow_redirects and status in REDIRECTS and (got.get("location") or got.get("uri")):
            return None  # followed: this answer's body is not read
        return sink(status, got)

    while True:
        data = request_bytes(method, where, headers, body)
        addrs = await _resolve(loop, where.host, where.port, deadline)
        resp = Response(on_head, head_only=method == "HEAD")
        if where.tls:
            await _tls_exchange(loop, where, addrs, data, resp, tls(), deadline)
        else:
            fut: asyncio.Future[None] = loop.create_future()
            exchange = _Plain(loop, fut, resp, data, addrs, deadline)
            try:
                exchange.start()
                await fut
            finally:  # answered, failed, timed out or cancelled: the socket goes now
                exchange.close()
                # A failure raised from `await fut` keeps this frame in its traceback while fut keeps the
                # failure: a cycle, never freed if fut was frozen in flight (serve freezes at each reload).
                del fut, exchange
        if resp.sink is not None:
            return resp
        redirects += 1
        if redirects >= MAX_REDIRECTS:
            raise WireError("too many redirects")
        nxt = _redirect_target(where, resp.headers.get("location") or resp.headers.get("uri", ""))
        if nxt.origin != where.origin and not (nxt.host == where.host and nxt.tls and not where.tls):
            headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "host")}
        if resp.status in (301, 302, 303) and method != "HEAD":
            method, body = "GET", None  # as browsers and Go's client do; 307 and 308 keep both
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        where = nxt


def _redirect_target(where: Target, location: str) -> Target:
    try:
        url = yarl.URL(location)
        if not url.scheme:
            url = where.url.join(url)
        return target(url)
    except (ValueError, TypeError, UnicodeError, WireError):
        raise WireError("invalid URL in redirect") from None


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int,
                   deadline: float) -> list[tuple[int, Any]]:
    """(family, sockaddr) to try in turn: an IP literal at once, a name from a cache of DNS_TTL seconds."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return [(family, (host, port))]
    now = time.monotonic()
    cached = _dns.get((host, port))
    if cached is not None and cached[0] > now:
        return cached[1]
    try:
        async with asyncio.timeout_at(deadline):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise WireError(f"cannot resolve host {host}") from None
    addrs: list[tuple[int, Any]] = [(int(family), addr) for family, _, _, _, addr in infos]
    if not addrs:
        raise WireError(f"cannot resolve host {host}")
    if len(_dns) >= DNS_ENTRIES:
        _dns.clear()
    _dns[(host, port)] = (now + DNS_TTL, addrs)
    return addrs


class _Plain:
    """A request on a fresh non-blocking socket, driven by loop callbacks until `fut` is done: with the
    answer, an error or TimeoutError at the deadline. The caller then calls close(), whatever happened."""

    __slots__ = ("loop", "fut", "resp", "out", "addrs", "next", "sock", "fd", "reading", "writing", "timer",
                 "error")

    def __init__(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None], resp: Response, data: bytes,
                 addrs: list[tuple[int, Any]], deadline: float):
        self.loop, self.fut, self.resp = loop, fut, resp
        self.out = memoryview(data)
        self.addrs, self.next = addrs, 0
        self.sock: socket.socket | None = None
        self.fd = -1
        self.reading = self.writing = False
        self.error: BaseException | None = None
        self.timer = loop.call_at(deadline, self._expire)

    def start(self) -> None:
        """Connect to the next address; on loopback the connection is up as connect() returns."""
        if self.next >= len(self.addrs):
            self._fail(WireError(describe_os_error(self.error)) if self.error else WireError("no address"))
            return
        family, addr = self.addrs[self.next]
        self.next += 1
        self._close_socket()
        try:
            self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            self.fd = self.sock.fileno()
            self.sock.connect(addr)
        except BlockingIOError:  # in progress: send at once, and wait for writability only if that can't
            pass
        except OSError as exc:
            self.error = exc.with_traceback(None)  # kept for its message; its traceback holds this frame, self
            self.start()
            return
        self._send(connecting=True)

    def _send(self, connecting: bool = False) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:  # refused or reset: while connecting, the next address gets its turn
            if connecting:
                self.error = exc.with_traceback(None)  # as in start()
                self.start()
            elif not self.resp.has_head:
                self._fail(WireError(describe_os_error(exc)))
            else:  # answered before taking the whole request: read on, send no more
                self.out = self.out[:0]
                if self.writing:
                    self.writing = False
                    self.loop.remove_writer(self.fd)
            return
        if sent or not connecting:
            self._read()
        self.out = self.out[sent:]
        if self.out and not self.writing:
            self.writing = True
            self.loop.add_writer(self.fd, self._writable)
        elif not self.out and self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)

    def _writable(self) -> None:
        if self.sock is None or self.fut.done():
            return
        if not self.reading:  # the connection just came up (or failed: send() tells)
            self._send(connecting=True)
        else:
            self._send()

    def _read(self) -> None:
        if not self.reading:
            self.reading = True
            self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        if self.sock is None or self.fut.done():
            return
        try:
            data = self.sock.recv(RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(WireError("response body incomplete" if self.resp.has_head else describe_os_error(exc)))
            return
        try:
            if data:
                self.resp.feed(data)
            else:
                self.resp.eof()
        except Exception as exc:  # noqa: BLE001 - WireError, or the sink's own error: the probe's to judge
            self._fail(exc)
            return
        if self.resp.done and not self.fut.done():
            self.fut.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if not self.fut.done():
            self.fut.set_exception(exc)

    def _expire(self) -> None:
        self._fail(TimeoutError())

    def close(self) -> None:
        """Cancel the timer, drop the callbacks, close the socket."""
        self.timer.cancel()
        self._close_socket()

    def _close_socket(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False
        if self.writing:
            self.loop.remove_writer(self.fd)
            self.writing = False
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _TLSProtocol(asyncio.Protocol):
    """The https side: asyncio's TLS transport hands the decrypted bytes to the same parser."""

    def __init__(self, fut: asyncio.Future[None], resp: Response, data: bytes):
        self.fut, self.resp, self.data = fut, resp, data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self.data)

    def data_received(self, data: bytes) -> None:
        if self.fut.done():
            return
        try:
            self.resp.feed(data)
        except Exception as exc:  # noqa: BLE001 - as in _Plain._readable
            self.fut.set_exception(exc)
            return
        if self.resp.done:
            self.fut.set_result(None)

    def eof_received(self) -> bool:
        self._eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fut.done():
            return
        if exc is None:
            self._eof()
        else:
            self.fut.set_exception(WireError("response body incomplete" if self.resp.has_head
                                             else describe_os_error(exc)))

    def _eof(self) -> None:
        if self.fut.done():
            return
        try:
            self.resp.eof()
        except WireError as exc:
            self.fut.set_exception(exc)
            return
        self.fut.set_result(None)


async def _tls_exchange(loop: asyncio.AbstractEventLoop, where: Target, addrs: list[tuple[int, Any]], data: bytes,
                        resp: Response, context: ssl.SSLContext, deadline: float) -> None:
    fut: asyncio.Future[None] = loop.create_future()
    transport: asyncio.Transport | None = None
    error: BaseException | None = None
    try:
        async with asyncio.timeout_at(deadline):
            for family, addr in addrs:
                try:
                    transport, _ = await loop.create_connection(
                        functools.partial(_TLSProtocol, fut, resp, data), addr[0], addr[1], family=family, ssl=context,
                        server_hostname=where.host, ssl_handshake_timeout=max(deadline - loop.time(), 0.001))
                    break
                except ssl.SSLError as exc:  # the certificate, or the handshake: no other address would do
                    # asyncio's _on_handshake_complete re-raises it while its argument holds it: its traceback
                    # holds that frame, which holds it, a cycle (kept for good if frozen in flight, see fetch)
                    exc.__traceback__ = None
                    raise WireError(describe_os_error(exc)) from None
                except OSError as exc:
                    error = exc.with_traceback(None)  # its traceback holds this frame: a cycle (see fetch)
            else:
                raise WireError(describe_os_error(error) if error else "no address")
            await fut
    finally:
        if transport is not None:
            transport.abort()  # the answer is in (or abandoned): no TLS close_notify exchange to wait for
        del fut, transport  # as in fetch: a failure's traceback holds this frame
