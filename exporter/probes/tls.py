"""`tls` gates: a TLS handshake verifies; measures the time until the earliest certificate expiry.

`value` is the number of seconds until the earliest `notAfter` among the certificates the server
presented (its whole chain as sent, as blackbox_exporter's probe_ssl_earliest_cert_expiry), and
`days_left` the same in days. The gate passes by default when the handshake succeeds, the chain
verifies against the system CAs (or `ca_file`) and the host name (`server_name`, default the
address's host) matches, and no presented certificate has expired.

A verification failure fails the gate with OpenSSL's reason (expired, host name mismatch,
self-signed, unknown issuer); the expiry is then still measured, from a second handshake that
does not verify, so that an expired certificate shows how long ago it lapsed.

The chain is read with the `ssl` module's C-level `get_unverified_chain()` (public only from
Python 3.13 on, present since 3.10); where it is missing, only the leaf certificate is seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass
from typing import Any

from exporter.config.fields import FilePath, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.net import client_context, describe_os_error
from exporter.probes.tcp import split_address

DAY = 86400.0


def _check_address(address: str) -> None:
    split_address(address)


@dataclass(frozen=True, slots=True)
class TLSProbeSpec:
    """Options of a `tls` gate."""

    address: str = opt(required=True, doc="host:port (IPv6: [::1]:port).", check=_check_address)
    server_name: str | None = opt(None, doc="Host name sent (SNI) and verified (default: the address's host).")
    ca_file: FilePath | None = opt(None, doc="PEM file of the CA(s) that sign the server's certificate.")
    insecure_skip_verify: bool = opt(False, doc="Do not verify chain or host name (expiry is still measured).")


async def probe(spec: TLSProbeSpec, ctx: ProbeContext) -> Measurement:
    """Handshake, verify, and measure the earliest expiry of the presented certificates."""
    host, port = split_address(spec.address)
    name = spec.server_name or host
    context = client_context(spec.ca_file, spec.insecure_skip_verify)
    now = ctx.now() if ctx.now else time.time()
    try:
        not_after = await _handshake(host, port, name, context)
    except ssl.SSLCertVerificationError as exc:
        message = describe_os_error(exc)
        with contextlib.suppress(ssl.SSLError, OSError, ProbeError):
            not_after = await _handshake(host, port, name, client_context(spec.ca_file, True))
            return Measurement(_values(not_after, now), ok=False, message=message)
        return Measurement({}, ok=False, message=message)
    except (ssl.SSLError, OSError) as exc:
        return Measurement({}, ok=False, message=describe_os_error(exc))
    values = _values(not_after, now)
    if values["value"] <= 0:
        return Measurement(values, ok=False, message="a presented certificate has expired")
    return Measurement(values)


async def _handshake(host: str, port: int, name: str, context: ssl.SSLContext) -> float:
    """Connect, complete the handshake, and return the earliest notAfter (Unix time) presented."""
    # server_hostname is SNI and, with check_hostname on, the name verified; with verification off
    # it is still sent (SNI) so the server presents the certificate it would give a real client.
    _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=name)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        return min(_not_after(info) for info in _chain(sslobj))
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _chain(sslobj: Any) -> list[dict[str, Any]]:
    """The presented certificates as getpeercert()-style dicts (leaf first)."""
    inner = getattr(sslobj, "_sslobj", None)
    get_chain = getattr(inner, "get_unverified_chain", None)
    if get_chain is not None:
        certs = get_chain() or []
        infos = [c.get_info() for c in certs if hasattr(c, "get_info")]
        if infos:
            return infos
    leaf = sslobj.getpeercert() if sslobj is not None else None
    if not leaf:
        raise ProbeError("the server's certificate could not be read")
    return [leaf]


def _not_after(info: dict[str, Any]) -> float:
    try:
        return float(ssl.cert_time_to_seconds(info["notAfter"]))
    except (KeyError, ValueError):
        raise ProbeError("a presented certificate has no readable notAfter") from None


def _values(not_after: float, now: float) -> dict[str, float]:
    left = not_after - now
    return {"value": left, "days_left": left / DAY}


KIND = ProbeKind("tls", TLSProbeSpec, probe, ("value", "days_left"), timeout_outcome="fail",
                 doc="A TLS endpoint's certificate chain verifies and is not expired (value: seconds left).")
