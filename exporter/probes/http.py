"""`http` gates: one request; measures status, response time and optionally a value from the body.

Every probe uses a fresh connection (the connector is built with `force_close=True`), as
blackbox_exporter does: a pooled keep-alive connection would hide a server that no longer
accepts new connections, and response_time would leave out connection setup. A session handed
in by the scheduler (`ctx.session`) must likewise use `force_close` (`new_session` builds one,
without a cookie jar, so that one probe's cookies never reach the next).

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
from exporter.probes import jsonpath, regex
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path
from exporter.probes.net import client_context, describe_os_error, describe_ssl_error

MAX_BODY = 4 * 1024 * 1024
USER_AGENT = f"qualitygate-exporter/{__version__}"
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


@dataclass(frozen=True)
class TLSSpec:
    """TLS options of an `http` gate."""

    ca_file: FilePath | None = opt(None, doc="PEM file of the CA(s) that sign the server's certificate.")
    insecure_skip_verify: bool = opt(False, doc="Do not verify the server's certificate (testing only).")


@dataclass(frozen=True)
class BasicAuthSpec:
    """HTTP basic authentication; the password is read from a file at every probe."""

    username: str = opt(required=True, doc="User name.")
    password_file: FilePath = opt(required=True, doc="File holding the password (a trailing newline is ignored).")


@dataclass(frozen=True)
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
        headers["Accept-Encoding"] = "gzip, deflate"  # what _read_body can inflate
    ssl_arg: Any = True  # the session's own default
    if spec.tls.ca_file:
        ssl_arg = client_context(spec.tls.ca_file, spec.tls.insecure_skip_verify)
    elif spec.tls.insecure_skip_verify:
        ssl_arg = False
    insecure = spec.tls.insecure_skip_verify
    owned = ctx.session is None
    session = new_session(insecure) if ctx.session is None else ctx.session(insecure)
    try:
        start = time.perf_counter()
        try:
            async with session.request(
                spec.method, spec.url, headers=headers, data=spec.body, ssl=ssl_arg,
                allow_redirects=spec.follow_redirects, timeout=aiohttp.ClientTimeout(total=ctx.timeout),
                auto_decompress=False,  # inflated here, bounded by MAX_BODY (see _read_body)
            ) as resp:
                status = resp.status
                body, truncated = await _read_body(resp)
        except _BodyError as exc:
            return Measurement({"status": float(status)}, ok=False, message=str(exc))
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return Measurement({}, ok=False, message=f"timed out after {format_duration(ctx.timeout)}")
        except aiohttp.ClientError as exc:
            return Measurement({}, ok=False, message=_describe(exc))
        elapsed = time.perf_counter() - start
    finally:
        if owned:
            await session.close()

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


async def _read_body(resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body's first MAX_BODY bytes (decoded from gzip or deflate), reading and dropping the
    rest; whether it was cut. A compressed body is inflated incrementally and never past MAX_BODY
    (+1 byte to tell whether more followed): a gzip bomb costs at most MAX_BODY of inflation."""
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding == "x-gzip":
        encoding = "gzip"
    if encoding not in ("identity", "", "gzip", "deflate"):
        raise _BodyError(f"unsupported Content-Encoding {encoding[:40]!r}")
    inflater: Any = None
    kept = bytearray()
    truncated = False
    async for chunk in resp.content.iter_chunked(64 * 1024):
        if truncated:
            continue  # read to the end (response_time covers the whole body) without inflating it
        if encoding in ("gzip", "deflate") and inflater is None and chunk:
            # Some servers send raw deflate under "deflate" (no zlib header): sniff as aiohttp does.
            raw = encoding == "deflate" and chunk[0] & 0x0F != 8
            wbits = -zlib.MAX_WBITS if raw else zlib.MAX_WBITS + (16 if encoding == "gzip" else 0)
            inflater = zlib.decompressobj(wbits)
        if inflater is None:
            room = MAX_BODY - len(kept)
            truncated = len(chunk) > room
            kept += chunk[:room]
            continue
        try:
            data = chunk
            while data and len(kept) < MAX_BODY:
                kept += inflater.decompress(data, MAX_BODY - len(kept))
                data = inflater.unconsumed_tail
            if len(kept) >= MAX_BODY and not inflater.eof:
                truncated = bool(inflater.decompress(data, 1))
        except zlib.error:
            raise _BodyError(f"response body is not valid {encoding}") from None
    return bytes(kept), truncated


class _BodyError(Exception):
    """The body could not be decoded: the gate fails with this message."""


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


def _describe(exc: aiohttp.ClientError) -> str:
    """A short reason for a failed request (never the request's headers: they may hold secrets)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return describe_ssl_error(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return describe_os_error(exc.os_error)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected without a response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body incomplete"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL in redirect"
    if isinstance(exc, aiohttp.ClientOSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


KIND = ProbeKind(
    "http", HTTPSpec, probe, ("value", "status", "response_time"),
    timeout_outcome="fail", doc="An HTTP(S) endpoint answers with a valid status (and body).",
)
