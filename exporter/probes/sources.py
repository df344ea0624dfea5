"""Where a report gate's report comes from: a local `path`, a `url` fetched at each evaluation, or `push`.

The report kinds (coverage, junit, json_file, sarif) declare their options as a subclass of
ReportSource, whose `problems()` asks for exactly one source. Each kind has one parser,
`parse(spec, stream, name)`; `measure` runs it on the source's bytes in the report pool
(exporter.probes.reading), so the same code judges a file, a fetched body and a pushed report.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from exporter.config.durations import format_duration
from exporter.config.fields import Duration, FilePath, Url, opt
from exporter.model import PUSH, Evidence
from exporter.probes.base import Measurement, ProbeContext, ProbeError, PushRecord
from exporter.probes.files import as_stream, display_path
from exporter.probes.http import USER_AGENT, BasicAuthSpec, TLSSpec, new_session, read_secret
from exporter.probes.net import client_context, describe_os_error, describe_ssl_error
from exporter.probes.reading import open_regular, run_read

MAX_URL_BODY = 32 * 1024 * 1024  # as --web.max-evidence-bytes: a fetched report is no bigger than a pushed one
SOURCES = ("path", "url", "push")
_URL_ONLY = ("headers", "tls", "basic_auth", "bearer_token_file")


@dataclass(frozen=True, slots=True)
class PushSource:
    """`push`: the report arrives over HTTP (POST /api/gates/{id}/evidence)."""

    max_age: Duration = opt(required=True, doc="Without an accepted push younger than this, the gate fails.")
    branch: str | None = opt(None, doc="The only branch whose pushes decide the gate (others are judged only).")


@dataclass(frozen=True, slots=True)
class ReportSource:
    """The source options every report kind takes: exactly one of path, url and push."""

    path: FilePath | None = opt(None, doc="The report file.")
    url: Url | None = opt(None, doc="A URL to fetch the report from at each evaluation (http:// or https://).")
    push: PushSource | None = opt(None, doc="The report is pushed by CI: {max_age: DURATION, branch: NAME}.")
    headers: dict[str, str] = opt(default_factory=dict, doc="With url: extra request headers.")
    tls: TLSSpec | None = opt(None, doc="With url: TLS options (ca_file, insecure_skip_verify).")
    basic_auth: BasicAuthSpec | None = opt(None, doc="With url: HTTP basic authentication.")
    bearer_token_file: FilePath | None = opt(None, doc="With url: file holding a bearer token.")

    def problems(self) -> list[tuple[str, str]]:
        """Exactly one source; the url options only with url."""
        given = [name for name in SOURCES if getattr(self, name) is not None]
        out: list[tuple[str, str]] = []
        if not given:
            out.append(("", "needs exactly one source: path, url or push"))
        elif len(given) > 1:
            out.append((given[1], f"needs exactly one source: path, url or push, found {' and '.join(given)}"))
        if self.url is None:
            for name in _URL_ONLY:
                if getattr(self, name):
                    out.append((name, "applies only with url"))
        if self.basic_auth and self.bearer_token_file:
            out.append(("bearer_token_file", "use either basic_auth or bearer_token_file, not both"))
        return out


S = TypeVar("S", bound=ReportSource)
ParseFn = Callable[[S, BinaryIO, str], Measurement]


def parse_bytes(parse: ParseFn[S]) -> Callable[[S, bytes, str], Measurement]:
    """A kind's `parse_report(spec, data, name)` from its stream parser."""

    def parse_report(spec: S, data: bytes, name: str = "report") -> Measurement:
        return parse(spec, as_stream(data), name)

    parse_report.__doc__ = f"Parse one report's bytes as the kind does for files ({parse.__module__})."
    return parse_report


def read_path(spec: S, parse: ParseFn[S], shown: str) -> Measurement:
    """Open the spec's file (never blocking on a FIFO) and parse it as it is read."""
    assert spec.path is not None
    with open_regular(spec.path, shown) as fh:
        return parse(spec, fh, shown)


async def measure(spec: S, ctx: ProbeContext, parse: ParseFn[S],
                  from_path: Callable[[S, str, str | None], Measurement] | None = None) -> Measurement:
    """The Measurement of a report gate, whatever its source."""
    if spec.push is not None:
        return from_push(spec.push, ctx)
    if spec.url is not None:
        shown = shown_url(spec.url)
        data = await fetch(spec, ctx, shown)
        return await run_read((ctx.gate_id, spec.url), parse, spec, as_stream(data), shown)
    assert spec.path is not None
    shown = display_path(spec.path, ctx.base_dir)
    if from_path is not None:
        return await run_read((ctx.gate_id, spec.path), from_path, spec, shown, ctx.base_dir)
    return await run_read((ctx.gate_id, spec.path), read_path, spec, parse, shown)


# --- push ------------------------------------------------------------------------------------


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_push(push: PushSource, ctx: ProbeContext) -> Measurement:
    """Judge the latest push that counts: none, or one older than max_age, fails (nothing unverified passes)."""
    record: PushRecord | None = ctx.evidence(ctx.gate_id) if ctx.evidence is not None else None
    if record is not None and push.branch is not None and record.branch != push.branch:
        record = None  # only the gate's branch decides it
    if record is None:
        if ctx.evidence is None:
            return Measurement({}, ok=False, message="no pushed evidence here (no exporter state: check --from URL)")
        where = f" from branch {push.branch}" if push.branch else ""
        return Measurement({}, ok=False, message=f"no evidence pushed{where} yet (qualitygate push)")
    now = ctx.now() if ctx.now else time.time()
    age = now - record.at
    evidence = Evidence(PUSH, record.at, commit=record.commit or None, branch=record.branch or None,
                        run_url=record.run_url or None, run_id=record.run_id or None,
                        expires_at=record.at + push.max_age, digest=record.digest or None)
    if age > push.max_age:
        message = f"no evidence since {_when(record.at)} (max_age {format_duration(push.max_age)})"
        return Measurement(dict(record.values), ok=False, message=message, evidence=evidence)
    return Measurement(dict(record.values), ok=record.ok, message=record.message, evidence=evidence)


# --- url -------------------------------------------------------------------------------------


def shown_url(url: str) -> str:
    """A URL for messages and pages: no credentials, no query (signed links carry tokens there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def _headers(spec: ReportSource, ctx: ProbeContext) -> dict[str, str]:
    headers = dict(spec.headers)
    # Secret files are read in the report pool: a secret on a hung mount must not stop the loop.
    if spec.basic_auth:
        auth = spec.basic_auth
        password = await run_read((ctx.gate_id, auth.password_file), read_secret, auth.password_file, ctx.base_dir)
        pair = f"{auth.username}:{password}".encode()
        headers["Authorization"] = f"Basic {base64.b64encode(pair).decode('ascii')}"
    if spec.bearer_token_file:
        token = await run_read((ctx.gate_id, spec.bearer_token_file), read_secret, spec.bearer_token_file, ctx.base_dir)
        headers["Authorization"] = f"Bearer {token}"
    if not any(k.lower() == "user-agent" for k in headers):
        headers["User-Agent"] = USER_AGENT
    return headers


async def fetch(spec: ReportSource, ctx: ProbeContext, shown: str, limit: int = MAX_URL_BODY) -> bytes:
    """GET the report; a status other than 2xx, a failed request or a body over `limit` is a ProbeError."""
    assert spec.url is not None
    headers = await _headers(spec, ctx)
    tls = spec.tls or TLSSpec()
    ssl_arg: Any = True
    if tls.ca_file:
        ssl_arg = await run_read((ctx.gate_id, tls.ca_file), client_context, tls.ca_file, tls.insecure_skip_verify)
    elif tls.insecure_skip_verify:
        ssl_arg = False
    owned = ctx.session is None
    session = new_session(tls.insecure_skip_verify) if ctx.session is None else ctx.session(tls.insecure_skip_verify)
    try:
        async with session.get(spec.url, headers=headers, ssl=ssl_arg,
                               timeout=aiohttp.ClientTimeout(total=ctx.timeout)) as resp:
            if not 200 <= resp.status < 300:
                raise ProbeError(f"{shown}: status {resp.status}, expected 2xx")
            if resp.content_length is not None and resp.content_length > limit:
                raise ProbeError(f"{shown}: larger than {limit // (1024 * 1024)} MiB")
            body = bytearray()
            # Counted after decompression: a small gzip body that inflates past the limit is refused.
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > limit:
                    raise ProbeError(f"{shown}: larger than {limit // (1024 * 1024)} MiB")
            return bytes(body)
    except TimeoutError:
        raise ProbeError(f"{shown}: timed out after {format_duration(ctx.timeout)}") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ProbeError(f"{shown}: {describe_ssl_error(exc.certificate_error)}") from None
    except aiohttp.ClientConnectorError as exc:
        raise ProbeError(f"{shown}: {describe_os_error(exc.os_error)}") from None
    except aiohttp.ClientError as exc:
        raise ProbeError(f"{shown}: request failed ({type(exc).__name__})") from None
    finally:
        if owned:
            await session.close()
