"""HTTP/1.1 on the wire for `http` probes: the request's bytes, and a bounded parser of the response.

Sans-I/O: `Response.feed(data)` takes bytes as they arrive and `eof()` the end of the connection
(probes/httpconn.py drives both). Everything a server sends is bounded: the header block
(MAX_HEAD bytes, MAX_HEADERS lines), a chunk-size line (MAX_CHUNK_LINE), the trailers; the body
goes to a sink as it arrives (the http probe's keeps at most MAX_BODY of it). What stays unbounded
is the time a server may keep sending an endless body: the probe's timeout ends that.

A malformed answer raises WireError with the gate's message ("invalid response: ...",
"response body incomplete", "server disconnected without a response").
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import yarl

MAX_HEAD = 64 * 1024  # bytes of a status line and header block (aiohttp allowed 8 KiB a line)
MAX_HEADERS = 256  # header lines of one response (or of the trailers)
MAX_CHUNK_LINE = 4096  # bytes of one chunk-size line, extensions included
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "CONNECT"})  # no Content-Length: 0 sent
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
_STATUS = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?:[ \t][^\r\n]*)?\r?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# One well-formed header line (a name, a colon, the value without surrounding blanks), at a line start.
_HEADER_LINE = re.compile(r"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*?)[ \t]*\r?$", re.M)
_CHUNK_SIZE = re.compile(rb"[ \t]*([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_ENDS = (b"\r\n\r\n", b"\n\n", b"\n\r\n")


class WireError(Exception):
    """The request could not be made or its answer read: str(exc) is the gate's message."""


class Sink(Protocol):
    """Where a response body goes, piece by piece (the http probe's decodes and bounds it)."""

    def feed(self, data: bytes) -> None:
        """One piece of the body, as it came off the wire (after chunked framing is removed)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a request needs of its URL: where to connect and what to send."""

    url: yarl.URL
    tls: bool
    host: str  # to connect to and for the certificate (IDNA-encoded, no brackets)
    port: int
    authority: str  # the Host header: host, and port unless the scheme's default
    path: str  # the request target: path and query, percent-encoded, no fragment
    userinfo: str | None  # "Basic ..." from user:password@ in the URL, sent when no Authorization is

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: credentials never follow a redirect to another origin."""
        return ("https" if self.tls else "http", self.host, self.port)


def target(url: str | yarl.URL) -> Target:
    """The Target of an absolute http(s) URL; WireError if it is not one."""
    try:
        return _target(url if isinstance(url, yarl.URL) else yarl.URL(url))
    except (ValueError, TypeError, UnicodeError):
        raise WireError("invalid URL") from None


@functools.lru_cache(maxsize=1024)
def _target(url: yarl.URL) -> Target:
    host = url.raw_host
    if url.scheme not in ("http", "https") or not host or url.port is None:
        raise ValueError(url)
    userinfo = None
    if url.raw_user or url.raw_password:
        pair = f"{url.user or ''}:{url.password or ''}".encode()
        userinfo = f"Basic {base64.b64encode(pair).decode('ascii')}"
    authority = url.host_port_subcomponent or host
    return Target(url, url.scheme == "https", host, url.port, authority.rstrip("."), url.raw_path_qs or "/",
                  userinfo)


def request_bytes(method: str, where: Target, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """The whole request: request line, headers (ours where the caller gave none), body.

    Connection: close always (a fresh connection per probe, and a body may end at the close);
    framing headers are ours, never the caller's. A header that could split the request
    (a line break, an invalid name) raises WireError.
    """
    lines = [f"{method} {where.path} HTTP/1.1"]
    given = {name.lower() for name in headers}
    if "host" not in given:
        lines.append(f"Host: {where.authority}")
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise WireError(f"invalid request header {name[:40]!r}")
        if name.lower() not in ("connection", "content-length", "transfer-encoding"):
            lines.append(f"{name}: {value}")
    if "accept" not in given:
        lines.append("Accept: */*")
    if where.userinfo and "authorization" not in given:
        lines.append(f"Authorization: {where.userinfo}")
    if body is not None:
        if "content-type" not in given:
            lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append(f"Content-Length: {len(body)}")
    elif method not in NO_BODY_METHODS:
        lines.append("Content-Length: 0")
    lines.append("Connection: close\r\n\r\n")
    head = "\r\n".join(lines).encode("utf-8")
    return head + body if body else head


# Parser states
_HEAD, _LENGTH, _CHUNK_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class Response:
    """One response, parsed as its bytes arrive. `on_head(status, headers)` returns the body's
    Sink, or None to end the exchange at the head (a redirect to follow: its body is not read)."""

    __slots__ = ("status", "headers", "sink", "done", "_on_head", "_head_only", "_buf", "_state", "_left",
                 "_trailer_lines")

    def __init__(self, on_head: Callable[[int, dict[str, str]], Sink | None], head_only: bool = False):
        self.status = 0
        self.headers: dict[str, str] = {}
        self.sink: Sink | None = None
        self.done = False
        self._on_head = on_head
        self._head_only = head_only  # a HEAD request: no body, whatever the headers say
        self._buf = b""
        self._state = _HEAD
        self._left = 0
        self._trailer_lines = 0

    @property
    def has_head(self) -> bool:
        """Whether the status line and headers are in (an error after that is an incomplete body)."""
        return self._state != _HEAD

    def feed(self, data: bytes) -> None:
        """Bytes off the connection; sets `done` when the response is complete (later bytes are ignored)."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        pos = 0
        end = len(data)
        while pos < end and not self.done:
            state = self._state
            if state == _LENGTH:
                n = min(self._left, end - pos)
                self._body(data[pos:pos + n] if pos or n < end else data)
                pos += n
                self._left -= n
                if not self._left:
                    self.done = True
            elif state == _UNTIL_CLOSE:
                self._body(data[pos:] if pos else data)
                pos = end
            elif state == _CHUNK_DATA:
                n = min(self._left, end - pos)
                self._body(data[pos:pos + n])
                pos += n
                self._left -= n
                if not self._left:
                    self._state = _CHUNK_END
            else:
                taken = self._framing(data, pos)
                if taken < 0:  # needs more bytes
                    self._buf = data[pos:]
                    return
                pos = taken

    def eof(self) -> None:
        """The server closed the connection: complete if the body was delimited by that."""
        if self.done:
            return
        if self._state == _UNTIL_CLOSE:
            self.done = True
        elif self._state == _HEAD:
            raise WireError("server disconnected without a response")
        else:
            raise WireError("response body incomplete")

    def _body(self, data: bytes) -> None:
        if data and self.sink is not None:
            self.sink.feed(data)

    def _framing(self, data: bytes, pos: int) -> int:
        """Parse the head, a chunk-size line, a chunk's CRLF or trailers at data[pos:]: the position after
        it, or -1 if it is not all there yet (WireError if it can never be valid)."""
        state = self._state
        if state == _HEAD:
            ends = [i for i in (data.find(e, pos) for e in _ENDS) if i >= 0]
            if not ends:
                if len(data) - pos > MAX_HEAD:
                    raise WireError(f"invalid response: header block larger than {MAX_HEAD // 1024} KiB")
                return -1
            cut = min(ends)
            if cut - pos > MAX_HEAD:
                raise WireError(f"invalid response: header block larger than {MAX_HEAD // 1024} KiB")
            after = data.index(b"\n", data.index(b"\n", cut) + 1) + 1
            self._head(data[pos:cut].split(b"\n"))
            return after
        nl = data.find(b"\n", pos)
        if nl < 0:
            if len(data) - pos > (MAX_CHUNK_LINE if state == _CHUNK_LINE else MAX_HEAD):
                raise WireError("invalid response: chunk framing line too long")
            return -1
        line = data[pos:nl]
        if state == _CHUNK_LINE:
            m = _CHUNK_SIZE.fullmatch(line) if len(line) <= MAX_CHUNK_LINE else None
            if m is None:
                raise WireError("invalid response: invalid chunk size")
            self._left = int(m[1], 16)
            self._state = _CHUNK_DATA if self._left else _TRAILERS
        elif state == _CHUNK_END:
            if line not in (b"", b"\r"):
                raise WireError("invalid response: chunk not followed by CRLF")
            self._state = _CHUNK_LINE
        else:  # trailers, read and dropped up to the empty line
            if line in (b"", b"\r"):
                self.done = True
            else:
                self._trailer_lines += 1
                if self._trailer_lines > MAX_HEADERS:
                    raise WireError(f"invalid response: more than {MAX_HEADERS} trailer lines")
        return nl + 1

    def _head(self, lines: list[bytes]) -> None:
        m = _STATUS.fullmatch(lines[0])
        if m is None:
            raise WireError(f"invalid response: bad status line {lines[0][:40].decode('latin-1')!r}")
        status = int(m[1])
        if len(lines) > MAX_HEADERS + 1:
            raise WireError(f"invalid response: more than {MAX_HEADERS} header lines")
        headers = _headers(lines)
        if 100 <= status < 200 and status != 101:
            return  # informational (100 Continue): the real head follows, in this state
        if status < 100:
            raise WireError(f"invalid response: bad status line {lines[0][:40].decode('latin-1')!r}")
        self.status, self.headers = status, headers
        self.sink = self._on_head(status, headers)
        if self.sink is None or self._head_only or status in (101, 204, 304):
            self.done = True
            return
        coding = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if coding is not None:
            # The last coding decides: chunked, or the body runs to the close (RFC 9112 6.3).
            self._state = _CHUNK_LINE if coding.rsplit(",", 1)[-1].strip().lower() == "chunked" else _UNTIL_CLOSE
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            (value,) = values if len(values) == 1 else ("",)
            if not _CONTENT_LENGTH.fullmatch(value):
                raise WireError("invalid response: invalid Content-Length")
            self._left = int(value)
            self._state = _LENGTH
            if not self._left:
                self.done = True
        else:
            self._state = _UNTIL_CLOSE


def _headers(lines: list[bytes]) -> dict[str, str]:
    """Header lines (after the status line) as a dict of lowercase names; repeated ones joined by commas."""
    text = b"\n".join(lines[1:]).decode("latin-1")
    pairs = _HEADER_LINE.findall(text)
    if len(pairs) != len(lines) - 1:  # a malformed or folded line: read them one at a time
        return _headers_slowly(lines)
    out: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def _headers_slowly(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    last = ""
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line[:1] in (b" ", b"\t") and last:  # an obsolete folded continuation: one space (RFC 9112 5.2)
            out[last] += " " + line.strip(b" \t").decode("latin-1")
            continue
        name, sep, value = line.partition(b":")
        if not sep or not _HEADER_NAME.fullmatch(name):
            raise WireError(f"invalid response: malformed header line {line[:40].decode('latin-1')!r}")
        last = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        out[last] = f"{out[last]}, {text}" if last in out else text
    return out
