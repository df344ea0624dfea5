"""What the network probes (http, tcp, promql) share: client TLS contexts and short error reasons."""

from __future__ import annotations

import errno
import functools
import os
import socket
import ssl

from exporter.probes.base import ProbeError


def client_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """A verifying client context (system CAs, or `ca_file`), or a non-verifying one if `insecure`.

    Loading a CA bundle costs milliseconds, so contexts are cached; the CA file's mtime and size
    are part of the key so that a rotated CA file is picked up, and SSL_CERT_FILE / SSL_CERT_DIR
    (read by OpenSSL when loading the system CAs) are too.
    """
    stamp: tuple[float, int] | None = None
    if ca_file:
        try:
            st = os.stat(ca_file)
        except OSError as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror
            raise ProbeError(f"{ca_file}: {reason}") from None
        stamp = (st.st_mtime, st.st_size)
    env = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    try:
        return _cached(ca_file, stamp, insecure, env)
    except ssl.SSLError as exc:
        raise ProbeError(f"{ca_file}: not a usable CA file ({exc.reason or exc})") from None


@functools.lru_cache(maxsize=64)
def _cached(ca_file: str | None, stamp: object, insecure: bool, env: object) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def describe_ssl_error(exc: BaseException) -> str:
    """A short reason for a TLS failure: `certificate verify failed: self-signed certificate`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f": {exc.verify_message}" if exc.verify_message else ""
        return f"TLS: certificate verify failed{detail}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"TLS: {exc.reason.lower().replace('_', ' ')}"
    return f"TLS: {exc}"


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connect timed out",
    errno.EADDRNOTAVAIL: "address not available",
}


def describe_os_error(exc: BaseException) -> str:
    """A short reason for a failed connection: `connection refused`, `cannot resolve host x`."""
    if isinstance(exc, ssl.SSLError):
        return describe_ssl_error(exc)
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host"
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
