"""`--web.config.file`: TLS, client certificates, basic auth and response headers (exporter-toolkit format).

The file has the shape Prometheus exporters share (prometheus/exporter-toolkit
docs/web-configuration.md) and is read with the same line-marked reader as the tracker config,
so every problem is reported as `FILE:LINE: key: message` and unknown keys are rejected.
Certificates, keys and CA files are loaded at start (a file that cannot be used is a config
error) and re-read on new connections when they change on disk, as the toolkit does.

Where Python's ssl cannot do what Go's crypto/tls does, the closest safe behaviour is chosen:

- `RequestClientCert` asks for nothing when there is no `client_ca_file` (nothing here reads an
  unverified certificate, so asking changes nothing) and, with one, verifies a certificate the
  client chooses to send (an invalid one is refused instead of ignored).
- `RequireAnyClientCert` (require a certificate, verify nothing) cannot be expressed: OpenSSL
  can only require a certificate it verifies. It therefore needs `client_ca_file` and behaves
  as `RequireAndVerifyClientCert`: stricter, never looser.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import logging
import os
import re
import ssl
import stat
import threading
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bcrypt
import yaml
from aiohttp import web

from exporter.config.fields import MISSING, ConfigError, FilePath, Issue, Reader, child, key_node, opt
from exporter.log import kv

log = logging.getLogger("qualitygate.web")

REALM = "qualitygate"
CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# exporter-toolkit options this implementation does not offer: named, so the error says so.
UNSUPPORTED_TLS = {
    "cert": "inline certificates are not supported here; use cert_file",
    "key": "inline keys are not supported here; use key_file",
    "client_ca": "inline CA certificates are not supported here; use client_ca_file",
    "cipher_suites": "not supported here (Go cipher names); OpenSSL's default TLS 1.2 suites are used",
    "curve_preferences": "not supported here; OpenSSL's default curves are used",
    "client_allowed_sans": "not supported here; sign client certificates with a dedicated CA instead",
}
UNSUPPORTED_TOP = {"rate_limit": "not supported here; put a reverse proxy in front to rate-limit"}
# Response headers the toolkit lets a web config set, with the values it accepts (None: any).
ALLOWED_HEADERS: dict[str, tuple[str, ...] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}
_BCRYPT_RE = re.compile(r"^\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
BCRYPT_MAX_PASSWORD = 72  # bcrypt reads only the first 72 bytes; Go's bcrypt (the toolkit's) cuts there too
AUTH_CACHE_SIZE = 1024
RELOAD_CHECK_INTERVAL = 1.0  # seconds between looks at the certificate files' mtimes


def header_problem(name: str, value: str) -> str | None:
    """Why a response header cannot be configured (exporter-toolkit's list and values), or None."""
    canonical = next((h for h in ALLOWED_HEADERS if h.lower() == name.lower()), None)
    if canonical is None:
        return f"this header cannot be configured (allowed: {', '.join(ALLOWED_HEADERS)})"
    allowed = ALLOWED_HEADERS[canonical]
    if allowed is not None and value.lower() not in allowed:
        return f"invalid value {value!r} (want one of: {', '.join(allowed)})"
    if _CONTROL_RE.search(value):
        return "must not contain control characters"
    return None


@dataclass(frozen=True)
class TLSServerConfig:
    """`tls_server_config`: serve HTTPS, optionally asking clients for certificates."""

    cert_file: FilePath = opt(required=True, doc="PEM certificate (chain) the server presents.")
    key_file: FilePath = opt(required=True, doc="PEM private key of cert_file (unencrypted).")
    client_auth_type: str = opt("NoClientCert", enum=CLIENT_AUTH_TYPES,
                                doc="Client certificate policy; RequireAndVerifyClientCert to authenticate clients.")
    client_ca_file: FilePath | None = opt(None, doc="PEM CA(s) that sign accepted client certificates.")
    min_version: str = opt("TLS12", enum=tuple(TLS_VERSIONS), doc="Lowest TLS version accepted.")
    max_version: str = opt("TLS13", enum=tuple(TLS_VERSIONS), doc="Highest TLS version accepted.")
    prefer_server_cipher_suites: bool = opt(True, doc="Let the server's cipher order win.")

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field checks."""
        out = []
        if TLS_VERSIONS[self.min_version] > TLS_VERSIONS[self.max_version]:
            out.append(("min_version", f"{self.min_version} is above max_version {self.max_version}"))
        if self.client_auth_type == "NoClientCert" and self.client_ca_file:
            out.append(("client_ca_file", "is set but client_auth_type is NoClientCert "
                                          "(use RequireAndVerifyClientCert to authenticate clients)"))
        needs_ca = ("RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
        if self.client_auth_type in needs_ca and not self.client_ca_file:
            why = (" (Python's ssl cannot require a certificate without verifying it)"
                   if self.client_auth_type == "RequireAnyClientCert" else "")
            out.append(("client_auth_type", f"{self.client_auth_type} needs client_ca_file{why}"))
        return out

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        """The ssl verify mode this policy maps to (see the module docstring for the approximations)."""
        if self.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
            return ssl.CERT_REQUIRED
        if self.client_auth_type == "VerifyClientCertIfGiven":
            return ssl.CERT_OPTIONAL
        if self.client_auth_type == "RequestClientCert" and self.client_ca_file:
            return ssl.CERT_OPTIONAL
        return ssl.CERT_NONE


@dataclass(frozen=True)
class HTTPServerConfig:
    """`http_server_config`: response headers; `http2` is accepted and ignored (HTTP/1.1 only)."""

    http2: bool = opt(True, doc="Accepted for compatibility and ignored: the server speaks HTTP/1.1.")
    headers: dict[str, str] = opt(default_factory=dict, doc="Security headers added to every response.")


@dataclass(frozen=True)
class WebConfigDoc:
    """The web config file's top level; sections are read one by one."""

    tls_server_config: Any = opt(None, doc="Serve HTTPS.")
    http_server_config: HTTPServerConfig | None = opt(None, doc="HTTP server options.")
    basic_auth_users: Any = opt(None, doc="user: bcrypt hash; when set, every endpoint needs basic auth.")


@dataclass(frozen=True)
class WebConfig:
    """A loaded web config: what `serve` needs to build its listener and middlewares."""

    source: str
    tls: TLSServerConfig | None = None
    http: HTTPServerConfig = field(default_factory=HTTPServerConfig)
    users: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))
    _ssl: _ReloadingTLS | None = field(default=None, repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or None for plain HTTP."""
        return self._ssl.context if self._ssl else None

    def middlewares(self) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
        """aiohttp middlewares: response headers (outermost), then basic auth."""
        out: list[Callable[..., Awaitable[web.StreamResponse]]] = []
        if self.http.headers:
            out.append(headers_middleware(dict(self.http.headers)))
        if self.users:
            out.append(BasicAuth(self.users).middleware)
        return out


# --- loading ----------------------------------------------------------------------------------


def load_web_config(path: str) -> WebConfig:
    """Read and check a web config file; raise ConfigError with every issue as FILE:LINE: key: message."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([Issue(path, 1, "", f"cannot read web config: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Issue(path, 1, "", f"web config is not UTF-8: {exc.reason}")]) from None
    return parse_web_config(text, path)


def parse_web_config(text: str, path: str = "<web-config>", env: Mapping[str, str] | None = None) -> WebConfig:
    """Parse a web config from text (see load_web_config); file paths are relative to `path`'s folder."""
    reader = Reader(path, os.path.dirname(os.path.abspath(path)) if path != "<web-config>" else os.getcwd())
    if env is not None:
        reader.env = env
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError([Issue(path, mark.line + 1 if mark else 1, "",
                                 f"invalid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(path, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([Issue(path, 1, "", "invalid YAML: nested too deeply")]) from None
    if root is None:
        return WebConfig(path)  # an empty file configures nothing, as in exporter-toolkit
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([Issue(path, root.start_mark.line + 1, "", "web config must be a mapping")])

    _unsupported(reader, root, "", UNSUPPORTED_TOP)
    doc = reader.dataclass(root, WebConfigDoc, "", skip=frozenset(UNSUPPORTED_TOP))
    # Sections are read from their nodes even when another one is bad: every issue at once.
    tls = _read_tls(reader, child(root, "tls_server_config"))
    users = _read_users(reader, child(root, "basic_auth_users"))
    _check_header_lines(reader, child(child(root, "http_server_config"), "headers"))
    http = HTTPServerConfig() if doc is MISSING or doc.http_server_config is None else doc.http_server_config
    if reader.issues:
        raise ConfigError(reader.issues)
    reloading = None
    if tls is not None:
        reloading = _ReloadingTLS(tls, root_tls=child(root, "tls_server_config"), reader=reader)
        if reader.issues:
            raise ConfigError(reader.issues)
    if child(child(root, "http_server_config"), "http2") is not None:
        log.info("http_server_config.http2 is accepted for compatibility and ignored: the server speaks HTTP/1.1",
                 extra=kv(file=path))
    return WebConfig(path, tls, http, types.MappingProxyType(users), reloading)


def _unsupported(reader: Reader, node: yaml.MappingNode, key: str, names: Mapping[str, str]) -> None:
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value in names:
            reader.error(k, f"{key}.{k.value}" if key else k.value, names[k.value])


def _check_header_lines(reader: Reader, node: yaml.Node | None) -> None:
    if not isinstance(node, yaml.MappingNode):
        return  # a wrong shape is reported by the dataclass reader
    for k_node, v_node in node.value:
        if isinstance(k_node, yaml.ScalarNode) and isinstance(v_node, yaml.ScalarNode):
            problem = header_problem(k_node.value, v_node.value)
            if problem:
                reader.error(v_node, f"http_server_config.headers.{k_node.value}", problem)


def _read_tls(reader: Reader, node: yaml.Node | None) -> TLSServerConfig | None:
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and node.style is None):
        return None
    if isinstance(node, yaml.MappingNode):
        _unsupported(reader, node, "tls_server_config", UNSUPPORTED_TLS)
    tls = reader.dataclass(node, TLSServerConfig, "tls_server_config", skip=frozenset(UNSUPPORTED_TLS))
    return None if tls is MISSING else tls


def _read_users(reader: Reader, node: yaml.Node | None) -> dict[str, str]:
    """basic_auth_users, read pair by pair so that a bad hash is reported at its own line."""
    if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and node.style is None):
        return {}
    if not isinstance(node, yaml.MappingNode):
        reader.error(node, "basic_auth_users", "must be a mapping of user: bcrypt hash")
        return {}
    users: dict[str, str] = {}
    for k_node, v_node in reader.pairs(node, "basic_auth_users"):
        key = f"basic_auth_users.{k_node.value}"
        if not k_node.value or ":" in k_node.value or _CONTROL_RE.search(k_node.value):
            reader.error(k_node, key, "a user name must be non-empty, without ':' or control characters")
            continue
        value = reader.scalar(v_node, key, "string")
        if value is MISSING:
            continue
        problem = bcrypt_problem(value)
        if problem:
            reader.error(v_node, key, problem)
            continue
        users[k_node.value] = value
    return users


def bcrypt_problem(value: str) -> str | None:
    """Why a string is not a usable bcrypt hash (never echoing it: it is a secret), or None."""
    m = _BCRYPT_RE.match(value)
    if m is None:
        if value.startswith("$2x$"):
            return "$2x$ bcrypt hashes (a buggy legacy variant) are not supported; rehash with $2b$ or $2y$"
        return "not a bcrypt hash (want $2a$, $2b$ or $2y$ as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
    if not 4 <= int(m["cost"]) <= 31:
        return f"bcrypt cost {int(m['cost'])} is out of range (4..31)"
    return None


# --- TLS --------------------------------------------------------------------------------------


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a service at start.
    raise _EncryptedKey


def _file_stamp(paths: tuple[str, ...]) -> tuple[tuple[int, int, float], ...] | None:
    try:
        return tuple((st.st_ino, st.st_size, st.st_mtime) for st in (os.stat(p) for p in paths))
    except OSError:
        return None


class _ReloadingTLS:
    """A server context whose certificate, key and client CA files are re-read when they change.

    The base context's SNI callback (called on every ClientHello, with or without SNI) swaps in a
    context rebuilt from the files when their mtimes changed; a rebuild that fails is logged and
    the previous context stays in use.
    """

    def __init__(self, tls: TLSServerConfig, root_tls: yaml.Node | None = None, reader: Reader | None = None):
        self.tls = tls
        self.paths = tuple(p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p)
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._stamp = _file_stamp(self.paths)
        self._failed: object = None
        self.context: ssl.SSLContext | None = None
        self.current: ssl.SSLContext | None = None
        built = self._try_build()
        if isinstance(built, list):
            for name, message in built:
                if reader is not None:
                    reader.error(key_node(root_tls, name), f"tls_server_config.{name}", message)
            return
        built.sni_callback = self._on_hello
        self.context = self.current = built

    def _try_build(self) -> ssl.SSLContext | list[tuple[str, str]]:
        """A fresh context from the files, or [(key, message)] saying what is wrong with them."""
        tls = self.tls
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

    def _on_hello(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        now = time.monotonic()
        if now - self._checked >= RELOAD_CHECK_INTERVAL:
            with self._lock:
                if now - self._checked >= RELOAD_CHECK_INTERVAL:
                    self._checked = now
                    self._maybe_reload()
        if self.current is not None and self.current is not ctx:
            conn.context = self.current

    def _maybe_reload(self) -> None:
        stamp = _file_stamp(self.paths)
        if stamp is None or stamp in (self._stamp, self._failed):
            return
        built = self._try_build()
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
        return exc.reason.lower().replace("_", " ")
    text = str(exc.args[1] if len(exc.args) > 1 else exc).split(" (_ssl.c")[0]
    text = re.sub(r"^\[\w+\] ", "", text)
    return "not valid PEM data" if text == "PEM lib" else text


# --- HTTP middlewares -------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def headers_middleware(headers: Mapping[str, str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Add the configured headers to every response, error responses included."""
    fixed = dict(headers)

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(fixed)
            raise
        if not response.prepared:
            response.headers.update(fixed)
        return response

    return add_headers


class BasicAuth:
    """HTTP basic auth against bcrypt hashes: constant-time, enumeration-proof, cached on success.

    An unknown user is checked against a dummy hash of the same cost, so that it takes as long as
    a wrong password and answers the same 401. bcrypt runs off the event loop, one at a time (it
    is CPU-bound on purpose); a successful check is remembered under a keyed hash of user,
    password and stored hash, so Prometheus's scrapes do not pay bcrypt every time.
    """

    def __init__(self, users: Mapping[str, str], realm: str = REALM):
        self._users = {u: h.encode() for u, h in users.items()}
        costs = collections.Counter(int(h[4:6]) for h in users.values())
        cost = costs.most_common(1)[0][0] if costs else 10
        self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(rounds=cost))
        self._key = os.urandom(32)  # cache keys are useless outside this process
        self._cache: collections.OrderedDict[bytes, str] = collections.OrderedDict()
        self._lock: asyncio.Lock | None = None
        self.challenge = f'Basic realm="{realm}"'

    def _cache_key(self, user: bytes, password: bytes, stored: bytes) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (user, password, stored):
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.digest()

    async def authenticate(self, header: str | None) -> str | None:
        """The user an Authorization header proves, or None."""
        creds = parse_basic(header)
        if creds is None:
            return None
        user, password = creds
        stored = self._users.get(user)
        known = stored is not None
        hashed = stored if stored is not None else self._dummy
        secret = password.encode()[:BCRYPT_MAX_PASSWORD]
        key = self._cache_key(user.encode(), secret, hashed)
        if known and key in self._cache:
            self._cache.move_to_end(key)
            return user
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            ok = await asyncio.to_thread(bcrypt.checkpw, secret, hashed)
        if not (ok and known):
            return None
        self._cache[key] = user
        if len(self._cache) > AUTH_CACHE_SIZE:
            self._cache.popitem(last=False)
        return user

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse requests without valid credentials (401); set request["user"] for the rest."""
        user = await self.authenticate(request.headers.get("Authorization"))
        if user is None:
            log.debug("unauthorized request", extra=kv(path=request.path, remote=request.remote))
            raise web.HTTPUnauthorized(text="Unauthorized\n", headers={"WWW-Authenticate": self.challenge})
        request["user"] = user
        return await handler(request)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header (UTF-8), or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password
