"""The server's TLS context, re-read from its certificate, key and CA files when they change on disk.

Certificates are loaded at start (a file that cannot be used is a config error, reported by the
web config parser at the key's line) and looked at again on new connections, as exporter-toolkit
does. The looking happens off the event loop: a certificate on a hung network mount must not
freeze every other request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import stat
import threading
import time
from collections.abc import Callable
from typing import Protocol

from exporter.log import kv

log = logging.getLogger("qualitygate.web")

TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
RELOAD_CHECK_INTERVAL = 1.0  # seconds between looks at the certificate files' mtimes

Stamp = tuple[tuple[int, int, float], ...]


class TLSFiles(Protocol):
    """What a context is built from: the files and the policy (webconfig.TLSServerConfig is one)."""

    @property
    def cert_file(self) -> str: ...
    @property
    def key_file(self) -> str: ...
    @property
    def client_ca_file(self) -> str | None: ...
    @property
    def min_version(self) -> str: ...
    @property
    def max_version(self) -> str: ...
    @property
    def prefer_server_cipher_suites(self) -> bool: ...
    @property
    def verify_mode(self) -> ssl.VerifyMode: ...


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a service at start.
    raise _EncryptedKey


def file_stamp(paths: tuple[str, ...]) -> Stamp | None:
    """(inode, size, mtime) of each file, or None when one cannot be looked at."""
    try:
        return tuple((st.st_ino, st.st_size, st.st_mtime) for st in (os.stat(p) for p in paths))
    except OSError:
        return None


def build_context(tls: TLSFiles) -> ssl.SSLContext | list[tuple[str, str]]:
    """A fresh server context from the files, or [(key, message)] saying what is wrong with them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[tls.min_version]
    ctx.maximum_version = TLS_VERSIONS[tls.max_version]
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    problems = []
    files = (("cert_file", tls.cert_file), ("key_file", tls.key_file), ("client_ca_file", tls.client_ca_file))
    for name, path in files:
        reason = _os_reason(path) if path else None
        if reason:
            problems.append((name, f"cannot read {path}: {reason}"))
    if problems:
        return problems
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file, password=_no_password)
    except _EncryptedKey:
        return [("key_file", "the key is encrypted; give an unencrypted key and protect it by file permissions")]
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return [("key_file", f"{tls.key_file} is not the key of {tls.cert_file}")]
        return [("cert_file", f"cannot load certificate and key: {_ssl_reason(exc)} "
                              f"(want PEM files: a certificate chain and its unencrypted key)")]
    except OSError as exc:
        return [("cert_file", f"cannot load certificate and key: {exc.strerror or exc}")]
    if tls.client_ca_file:
        try:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            return [("client_ca_file", f"cannot load CA certificates from {tls.client_ca_file}: "
                                       f"{_ssl_reason(exc) if isinstance(exc, ssl.SSLError) else exc.strerror}")]
    ctx.verify_mode = tls.verify_mode
    return ctx


class ReloadingTLS:
    """A server context whose certificate, key and client CA files are re-read when they change.

    The base context's SNI callback (called on every ClientHello, with or without SNI) serves the
    newest good context, and at most once a second starts a look at the files in a thread; when
    their stamps changed, the context is rebuilt there too and used from the next connection on.
    A rebuild that fails is logged once per state of the files and the previous context stays.
    """

    def __init__(self, tls: TLSFiles, *, clock: Callable[[], float] = time.monotonic):
        self.tls = tls
        self.paths = tuple(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = clock()
        self._stamp = file_stamp(self.paths)
        self._failed: Stamp | None = None
        self._task: asyncio.Task[None] | None = None
        self.context: ssl.SSLContext | None = None
        self.current: ssl.SSLContext | None = None
        self.problems: list[tuple[str, str]] = []
        built = build_context(tls)
        if isinstance(built, list):
            self.problems = built
            return
        built.sni_callback = self._on_hello
        self.context = self.current = built

    def _on_hello(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        now = self._clock()
        if now - self._checked >= RELOAD_CHECK_INTERVAL and (self._task is None or self._task.done()):
            self._checked = now
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a context used outside asyncio (a plain ssl socket): look right here
                self.check()
            else:
                self._task = loop.create_task(asyncio.to_thread(self.check))
        if self.current is not None and self.current is not ctx:
            conn.context = self.current

    def check(self) -> None:
        """Look at the files and rebuild the context if they changed (blocking: call it in a thread)."""
        with self._lock:
            stamp = file_stamp(self.paths)
            if stamp is None or stamp in (self._stamp, self._failed):
                return
            built = build_context(self.tls)
            if isinstance(built, list):
                # Logged once per state of the files; the next change (e.g. the key arriving) is tried again.
                self._failed = stamp
                log.error("TLS files changed but cannot be loaded; keeping the previous ones",
                          extra=kv(errors="; ".join(f"{k}: {m}" for k, m in built)))
                return
            self._stamp = stamp
            self.current = built
        log.info("TLS certificate files reloaded", extra=kv(cert_file=self.tls.cert_file))


def _os_reason(path: str) -> str | None:
    """Why a certificate file cannot be read, or None; a device or FIFO would hang OpenSSL's read."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "not a regular file"
        with open(path, "rb"):
            return None
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


def _ssl_reason(exc: ssl.SSLError) -> str:
    if exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    text = str(exc.args[1] if len(exc.args) > 1 else exc).split(" (_ssl.c")[0]
    text = re.sub(r"^\[\w+\] ", "", text)
    return "not valid PEM data" if text == "PEM lib" else text
