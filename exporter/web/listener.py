"""Listening for HTTP: aiohttp's server behind read deadlines, so slow clients end at a timeout.

aiohttp has no timeout for reading a request (Go's http.Server has ReadHeaderTimeout): a client
that opens a connection and dribbles its headers, or its body, holds a descriptor for as long as
it likes. Two deadlines close that gap:

- the request head: a new connection must deliver its first complete request head within
  --web.read-timeout of being accepted (after the TLS handshake, which has the same bound), or it
  is closed. The head of a later request on a kept-alive connection is bounded by
  --web.idle-timeout, aiohttp's keep-alive timeout, which closes a connection that has not
  produced a complete request since its last answer.
- the request body: a middleware reads the body before the handler runs and answers 408, closing
  the connection, if it has not arrived within --web.read-timeout. A client that goes away
  mid-body is dropped quietly instead of logging an error per client.

The head deadline sits in a protocol that wraps aiohttp's: it looks at the bytes only to see where
the first head ends, and passes everything through untouched.

The runtime's Foreground (exporter/engine/foreground.py) is told that a request is being answered
by the same protocol, as soon as aiohttp has parsed one out of the bytes (a turn or two before its
handler runs), and by `answered`, the outermost middleware, which writes the answer and tells it
the request is done; background slices (a reload's) wait for that, within a bound. Parsed, not
merely bytes that look like a head's end: a client sending blank lines, or a body after a refusal,
would otherwise hold it with no request at all.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from exporter.engine.foreground import Foreground
from exporter.log import kv

log = logging.getLogger("qualitygate.web")

# After answering a request whose body was not read (a 401, a 408), aiohttp drains the rest for
# this long so that the client can read the answer; its default of 10 s would let a dribbling
# client outlive the read timeout.
LINGERING_SECONDS = 1.0


class ReadTimeouts:
    """How many connections and requests were ended by a read deadline, by stage (a prometheus_client collector)."""

    def __init__(self) -> None:
        self.head = 0
        self.body = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        """qualitygate_http_read_timeouts_total{stage="head"|"body"}."""
        family = CounterMetricFamily("qualitygate_http_read_timeouts_total",
                                     "Connections closed because a request head or body did not arrive within "
                                     "--web.read-timeout.", labels=["stage"])
        family.add_metric(["head"], self.head)
        family.add_metric(["body"], self.body)
        yield family


class HeadDeadline(asyncio.Protocol):
    """Wraps one connection's aiohttp protocol; closes the transport if no request head is
    complete within `timeout` seconds of the connection being made."""

    def __init__(self, inner: asyncio.Protocol, timeout: float, counts: ReadTimeouts,
                 foreground: Foreground | None = None):
        """foreground: told when aiohttp has parsed a request here, and when the connection ends."""
        self._inner = inner
        self._timeout = timeout
        self._counts = counts
        self._foreground = foreground
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, so a head end split across reads is still found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(self._timeout, self._expire)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            seen = self._tail + data
            # A head ends with an empty line; lenient parsers accept a bare LF too.
            if b"\n\r\n" in seen or b"\n\n" in seen:
                self._cancel()
            else:
                self._tail = seen[-2:]
        if self._foreground is None:
            self._inner.data_received(data)
            return
        # aiohttp counts the requests it parsed on a connection (a private attribute: aiohttp < 4 is
        # pinned; without it the middleware alone tells, a turn or two later).
        before = getattr(self._inner, "_request_count", None)
        self._inner.data_received(data)
        if before is not None and self._transport is not None and getattr(self._inner, "_request_count", 0) > before:
            self._foreground.enter(self._transport)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._foreground is not None:
            self._foreground.leave(self._transport)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._counts.head += 1
            log.debug("closing a connection whose request head did not arrive in time",
                      extra=kv(timeout_seconds=self._timeout))
            # abort, not close: there is nothing to flush, and a dribbling peer must not keep it half-open
            self._transport.abort()


def body_deadline(timeout: float, counts: ReadTimeouts) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware: read a request's body within `timeout` seconds, or answer 408 and close."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.body_exists and not getattr(request.match_info.handler, "reads_own_body", False):
            try:
                # cached: the handler's own read() gets the same bytes back
                await asyncio.wait_for(request.read(), timeout if timeout > 0 else None)
            except web.HTTPRequestEntityTooLarge as exc:
                # The same {"error": ...} shape as every other refusal, not aiohttp's text page.
                resp = web.json_response({"error": f"request body too large: {exc.text or 'refused'}"},
                                         status=413)
                resp.force_close()
                return resp
            except TimeoutError:
                counts.body += 1
                resp = web.json_response({"error": f"request body not received within {timeout:g}s"}, status=408)
                resp.force_close()
                return resp
            except ConnectionResetError:
                # The client left mid-body. Nobody is there to answer, and letting it through
                # would log an aiohttp error (with a traceback) per dropped client.
                log.debug("client closed the connection before sending its request body")
                resp = web.Response(status=400)
                resp.force_close()
                return resp
        return await handler(request)

    return middleware


def answered(foreground: Foreground) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Middleware, the outermost: tell the Foreground a request is being answered, write the answer
    here, then tell it the request is done.

    aiohttp would write it right after the middlewares return; writing it here is what lets the
    Foreground know when that is (a scrape's body is written in several turns when the client reads
    slower than it is sent). A response already written (a stream) is left as it is."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        if request.transport is not None:
            foreground.enter(request.transport)
        try:
            resp = await handler(request)
            if not resp.prepared:
                try:
                    await resp.prepare(request)
                    await resp.write_eof()
                except ConnectionError:
                    pass  # the client left; aiohttp meets the same error and logs the access
            return resp
        finally:
            foreground.leave(request.transport)

    return middleware


async def listen(runner: web.AppRunner, host: str | None, port: int, *, ssl_context: ssl.SSLContext | None,
                 read_timeout: float, counts: ReadTimeouts, foreground: Foreground | None = None
                 ) -> asyncio.AbstractServer:
    """Start accepting connections for a set-up runner, each behind a HeadDeadline."""
    server = runner.server
    assert server is not None, "runner.setup() first"

    def factory() -> asyncio.Protocol:
        return HeadDeadline(server(), read_timeout, counts, foreground)

    extra: dict[str, Any] = {}
    if ssl_context is not None and read_timeout > 0:
        extra["ssl_handshake_timeout"] = read_timeout
    return await asyncio.get_running_loop().create_server(factory, host, port, ssl=ssl_context,
                                                          reuse_address=True, **extra)
