"""`tcp` gates: a TCP connection (optionally with a TLS handshake) opens; measures connect_time.

With `tls: true` the server's certificate is verified against the system CAs (or the bundle
named by SSL_CERT_FILE / SSL_CERT_DIR) and the host name; connect_time then includes the
handshake. The connection is closed right after it opened: nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from dataclasses import dataclass

from exporter.config.fields import opt
from exporter.probes.base import Measurement, ProbeContext, ProbeKind
from exporter.probes.net import client_context, describe_os_error


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError if malformed."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"invalid address {address!r} (write IPv6 addresses as [::1]:port)")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid address {address!r} (want host:port)")
    return host, int(port_text)


def _check_address(address: str) -> None:
    split_address(address)


@dataclass(frozen=True, slots=True)
class TCPSpec:
    """Options of a `tcp` gate."""

    address: str = opt(required=True, doc="host:port (IPv6: [::1]:port).", check=_check_address)
    tls: bool = opt(False, doc="Also complete a TLS handshake, verifying the certificate and host name.")


async def probe(spec: TCPSpec, ctx: ProbeContext) -> Measurement:
    """Open the connection and close it again; a refused or failed connection fails the gate."""
    host, port = split_address(spec.address)
    context = client_context() if spec.tls else None
    start = time.perf_counter()
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host if spec.tls else None)
    except (ssl.SSLError, OSError) as exc:
        return Measurement({}, ok=False, message=describe_os_error(exc))
    elapsed = time.perf_counter() - start
    writer.close()
    # The connection was made: how it ends is not what this gate measures.
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)
    return Measurement({"value": elapsed, "connect_time": elapsed})


KIND = ProbeKind("tcp", TCPSpec, probe, ("value", "connect_time"), timeout_outcome="fail",
                 doc="A TCP (or TLS) port accepts connections.")
