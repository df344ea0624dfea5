"""`http` gates: one request; measures status, response time and optionally a value from the body.

Every probe uses a fresh connection, as blackbox_exporter does: a pooled keep-alive connection
would hide a server that no longer accepts new connections, and response_time would leave out
connection setup. The request is made by probes/httpconn.py (our own lean HTTP/1.1 client: aiohttp's
client machinery cost more CPU per probe than the whole evaluation may); no cookies are kept.
`new_session` and `Sessions` remain for the other kinds that use aiohttp (promql, report URLs):
sessions that likewise open a fresh connection per request and keep no cookies.

response_time runs from the start of the request until the whole body has been read. The body
is read to the end but at most MAX_BODY bytes are kept: json_path on a larger body is an error,
body_regex sees only the kept prefix. A gzip or deflate body is inflated here, incrementally, and
never beyond MAX_BODY: a compression bomb costs no more than an ordinary large body.
body_regex is an RE2 pattern matched on the raw (UTF-8) bytes, off the loop when large (probes/regex.py).
"""

from __future__ import annotations

import base64
import json
import re
import time
import zlib
from dataclasses import dataclass
from typing import Any

import aiohttp

from exporter import __version__
from exporter.config.durations import format_duration
from exporter.config.fields import FilePath, Regex, Url, opt
from exporter.probes import httpconn, jsonpath, regex
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path
from exporter.probes.httpwire import WireError
from exporter.probes.net import client_context

MAX_BODY = 4 * 1024 * 1024
USER_AGENT = f"qualitygate-exporter/{__version__}"
# The request ends this much before ctx.timeout: the evaluation's own bound (the same timeout, started
# a little earlier) must not cancel the probe before it has answered "timed out after ..." itself.
TIMEOUT_SLACK = 0.01
_STATUS_RE = re.compile(r"^[1-5](?:[0-9][0-9]|xx)$")  # ASCII digits only
_METHOD_RE = re.compile(r"^[A-Z]+$")


def _check_status_codes(codes: tuple[str, ...]) -> None:
    if not codes:
        raise ValueError("must list at least one status code")
    for code in codes:
        if not _STATUS_RE.match(code):
            raise ValueError(f"invalid status code {code!r} (want e.g. 200 or 2xx)")


def _check_method(method: str) -> None:
    if not _METHOD_RE.match(method):
        raise ValueError(f"invalid HTTP method {method!r} (want e.g. GET, HEAD, POST)")


@dataclass(frozen=True, slots=True)
class TLSSpec:
    """TLS options of an `http` gate."""

    ca_file: FilePath | None = opt(None, doc="PEM file of the CA(s) that sign the server's certificate.")
    insecure_skip_verify: bool = opt(False, doc="Do not verify the server's certificate (testing only).")


@dataclass(frozen=True, slots=True)
class BasicAuthSpec:
    """HTTP basic authentication; the password is read from a file at every probe."""

    username: str = opt(required=True, doc="User name.")
    password_file: FilePath = opt(required=True, doc="File holding the password (a trailing newline is ignored).")


@dataclass(frozen=True, slots=True)
class HTTPSpec:
    """Options of an `http` gate."""

    url: Url = opt(required=True, doc="The URL to request (http:// or https://).")
    method: str = opt("GET", doc="HTTP method.", check=_check_method)
    headers: dict[str, str] = opt(default_factory=dict, doc="Extra request headers.")
    body: str | None = opt(None, doc="Request body.")
    valid_status_codes: list[str] = opt(("2xx",), doc="Accepted statuses: codes (200) and classes (2xx).",
                                        check=_check_status_codes)
    follow_redirects: bool = opt(True, doc="Follow redirects (up to 10); the final response is measured.")
    tls: TLSSpec = opt(default_factory=TLSSpec, doc="TLS options.")
    basic_auth: BasicAuthSpec | None = opt(None, doc="HTTP basic authentication.")
    bearer_token_file: FilePath | None = opt(None, doc="File holding a bearer token (a trailing newline is ignored).")
    json_path: str | None = opt(None, doc="Path of a number in the JSON body, e.g. $.checks[0].ratio: the value.",
                                check=jsonpath.check)
    body_regex: Regex | None = opt(None, doc="Must match the body; its first capture group, if any, is the value.")

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field checks."""
        out = []
        if self.basic_auth and self.bearer_token_file:
            out.append(("bearer_token_file", "use either basic_auth or bearer_token_file, not both"))
        if self.json_path and self.body_regex:
            out.append(("body_regex", "use either json_path or body_regex, not both"))
        return out


def new_session(insecure: bool = False) -> aiohttp.ClientSession:
    """A client session for probes: a fresh connection per request, no cookies kept."""
    connector = aiohttp.TCPConnector(force_close=True, limit=0, ssl=not insecure)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


class Sessions:
    """The client sessions probes share, one per TLS mode, made on first use: call it as
    ProbeContext.session. Each probe still opens a fresh connection (see new_session)."""

    def __init__(self) -> None:
        self._by_mode: dict[bool, aiohttp.ClientSession] = {}

    def __call__(self, insecure: bool) -> aiohttp.ClientSession:
        session = self._by_mode.get(insecure)
        if session is None or session.closed:
            session = self._by_mode[insecure] = new_session(insecure)
        return session

    async def close(self) -> None:
        for session in self._by_mode.values():
            await session.close()
        self._by_mode.clear()


def read_secret(path: str, base_dir: str | None = None) -> str:
    """A secret file's content without its trailing newline; ProbeError if it cannot be read."""
    name = display_path(path, base_dir)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except FileNotFoundError:
        raise ProbeError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProbeError(f"{name}: cannot read secret ({getattr(exc, 'strerror', None) or 'not UTF-8'})") from None


def status_valid(status: int, codes: tuple[str, ...] | list[str]) -> bool:
    """Whether a status matches one of the codes (`200`) or classes (`2xx`)."""
    text = str(status)
    return any(text == c or (c.endswith("xx") and text[0] == c[0]) for c in codes)


async def probe(spec: HTTPSpec, ctx: ProbeContext) -> Measurement:
    """Make the request; a refused connection, an invalid status or a non-matching body fails."""
    headers = dict(spec.headers)
    if spec.basic_auth:
        pair = f"{spec.basic_auth.username}:{read_secret(spec.basic_auth.password_file, ctx.base_dir)}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
    if spec.bearer_token_file:
        headers["Authorization"] = f"Bearer {read_secret(spec.bearer_token_file, ctx.base_dir)}"
    if not any(k.lower() == "user-agent" for k in headers):
        headers["User-Agent"] = USER_AGENT
    if not any(k.lower() == "accept-encoding" for k in headers):
        headers["Accept-Encoding"] = "gzip, deflate"  # what _Body can inflate
    tls = spec.tls
    if tls.ca_file:
        context = client_context(tls.ca_file, tls.insecure_skip_verify)  # a missing CA file: error before any request
        contexts = lambda: context  # noqa: E731
    else:
        contexts = lambda: client_context(None, tls.insecure_skip_verify)  # noqa: E731
    start = time.perf_counter()
    try:
        resp = await httpconn.fetch(spec.method, spec.url, headers, None if spec.body is None else spec.body.encode(),
                                    timeout=ctx.timeout - min(TIMEOUT_SLACK, ctx.timeout / 10),
                                    follow_redirects=spec.follow_redirects, tls=contexts,
                                    sink=_Body)
    except _BodyError as exc:
        return Measurement({"status": float(exc.status)}, ok=False, message=str(exc))
    except TimeoutError:
        return Measurement({}, ok=False, message=f"timed out after {format_duration(ctx.timeout)}")
    except WireError as exc:
        return Measurement({}, ok=False, message=str(exc))
    elapsed = time.perf_counter() - start
    status = resp.status
    assert isinstance(resp.sink, _Body)
    body, truncated = resp.sink.result()

    values = {"status": float(status), "response_time": elapsed, "value": elapsed}
    if not status_valid(status, spec.valid_status_codes):
        expected = " or ".join(spec.valid_status_codes)
        return Measurement(values, ok=False, message=f"status {status}, expected {expected}")
    if spec.json_path:
        values["value"] = _json_value(body, truncated, spec.json_path)
    elif spec.body_regex:
        m = await regex.search(spec.body_regex, body, gate_id=ctx.gate_id, what="body_regex",
                               timeout=max(ctx.timeout - elapsed, 0.001))
        if not m:
            return Measurement(values, ok=False, message="body does not match body_regex")
        if m.re.groups:
            values["value"] = _capture_number(None if m[1] is None else m[1].decode("utf-8", "replace"),
                                              "body_regex")
    return Measurement(values)


class _Body:
    """A response body's first MAX_BODY bytes (decoded from gzip or deflate); the rest is read and
    dropped (response_time covers the whole body). A compressed body is inflated incrementally and
    never past MAX_BODY (+1 byte to tell whether more followed): a gzip bomb costs at most MAX_BODY
    of inflation."""

    __slots__ = ("status", "encoding", "inflater", "kept", "truncated")

    def __init__(self, status: int, headers: dict[str, str]):
        self.status = status
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding == "x-gzip":
            encoding = "gzip"
        if encoding not in ("identity", "", "gzip", "deflate"):
            raise _BodyError(f"unsupported Content-Encoding {encoding[:40]!r}", status)
        self.encoding = encoding
        self.inflater: Any = None
        self.kept: bytes | bytearray = b""
        self.truncated = False

    def feed(self, chunk: bytes) -> None:
        if self.truncated:
            return  # read to the end without inflating it
        if self.encoding in ("gzip", "deflate") and self.inflater is None:
            # Some servers send raw deflate under "deflate" (no zlib header): sniff as aiohttp does.
            raw = self.encoding == "deflate" and chunk[0] & 0x0F != 8
            wbits = -zlib.MAX_WBITS if raw else zlib.MAX_WBITS + (16 if self.encoding == "gzip" else 0)
            self.inflater = zlib.decompressobj(wbits)
        kept = self.kept
        if self.inflater is None:
            room = MAX_BODY - len(kept)
            if len(chunk) > room:
                self.truncated, chunk = True, chunk[:room]
            if not kept:
                self.kept = chunk  # most bodies come in one piece: no copy
            else:
                if isinstance(kept, bytes):
                    kept = self.kept = bytearray(kept)
                kept += chunk
            return
        if isinstance(kept, bytes):
            kept = self.kept = bytearray(kept)
        inflater = self.inflater
        try:
            data = chunk
            while data and len(kept) < MAX_BODY:
                kept += inflater.decompress(data, MAX_BODY - len(kept))
                data = inflater.unconsumed_tail
            if len(kept) >= MAX_BODY and not inflater.eof:
                self.truncated = bool(inflater.decompress(data, 1))
        except zlib.error:
            raise _BodyError(f"response body is not valid {self.encoding}", self.status) from None

    def result(self) -> tuple[bytes, bool]:
        """The kept body, and whether more followed."""
        return bytes(self.kept), self.truncated


class _BodyError(Exception):
    """The body could not be decoded: the gate fails with this message (and the status it came with)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _json_value(body: bytes, truncated: bool, path: str) -> float:
    if truncated:
        raise ProbeError(f"body larger than {MAX_BODY // (1024 * 1024)} MiB, json_path not evaluated")
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProbeError("body is not valid JSON") from None
    try:
        return jsonpath.number(doc, path)
    except KeyError as exc:
        raise ProbeError(f"json_path {path}: {exc.args[0]} not found in body") from None
    except ValueError as exc:
        raise ProbeError(f"json_path {exc}") from None


def _capture_number(text: str | None, what: str) -> float:
    if text is None:
        raise ProbeError(f"{what} matched but its first group captured nothing")
    try:
        return float(text.strip())
    except ValueError:
        raise ProbeError(f"{what} captured {text[:40]!r}, not a number") from None


KIND = ProbeKind(
    "http", HTTPSpec, probe, ("value", "status", "response_time"),
    timeout_outcome="fail", doc="An HTTP(S) endpoint answers with a valid status (and body).",
)
