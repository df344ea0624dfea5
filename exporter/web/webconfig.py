"""`--web.config.file`: TLS, client certificates, basic auth and response headers (exporter-toolkit format).

The file has the shape Prometheus exporters share (prometheus/exporter-toolkit
docs/web-configuration.md) and is read with the same line-marked reader as the tracker config,
so every problem is reported as `FILE:LINE: key: message` and unknown keys are rejected.
Certificates, keys and CA files are loaded at start (a file that cannot be used is a config
error); `exporter.web.tls` re-reads them when they change, `exporter.web.auth` checks passwords.

Where Python's ssl cannot do what Go's crypto/tls does, the closest safe behaviour is chosen:

- `RequestClientCert` asks for nothing when there is no `client_ca_file` (nothing here reads an
  unverified certificate, so asking changes nothing) and, with one, verifies a certificate the
  client chooses to send (an invalid one is refused instead of ignored).
- `RequireAnyClientCert` (require a certificate, verify nothing) cannot be expressed: OpenSSL
  can only require a certificate it verifies. It therefore needs `client_ca_file` and behaves
  as `RequireAndVerifyClientCert`: stricter, never looser.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from exporter.config.fields import MISSING, ConfigError, FilePath, Issue, Reader, child, key_node, opt
from exporter.log import kv
from exporter.web.auth import BasicAuth, Middleware, headers_middleware
from exporter.web.auth import parse_basic as parse_basic  # re-exported: the fuzz tests reach it here
from exporter.web.tls import TLS_VERSIONS, ReloadingTLS

log = logging.getLogger("qualitygate.web")

CLIENT_AUTH_TYPES = ("NoClientCert", "RequestClientCert", "RequireAnyClientCert", "VerifyClientCertIfGiven",
                     "RequireAndVerifyClientCert")
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
_BCRYPT_RE = re.compile(r"\$2[aby]\$(?P<cost>[0-9]{2})\$[./A-Za-z0-9]{53}")  # fullmatch; ASCII digits only
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Each step of cost doubles bcrypt's work: 10 takes ~70 ms here, 14 ~2 s, 16 ~8 s per uncached login (and
# once at start for the dummy hash), 31 would hang the start for days.
BCRYPT_MIN_COST, BCRYPT_MAX_COST = 4, 16


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
    _ssl: ReloadingTLS | None = field(default=None, repr=False, compare=False)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server TLS context, or None for plain HTTP."""
        return self._ssl.context if self._ssl else None

    def middlewares(self) -> list[Middleware]:
        """aiohttp middlewares: response headers (outermost), then basic auth."""
        out: list[Middleware] = []
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
        reloading = ReloadingTLS(tls)
        for name, message in reloading.problems:
            reader.error(key_node(child(root, "tls_server_config"), name), f"tls_server_config.{name}", message)
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
    m = _BCRYPT_RE.fullmatch(value)
    if m is None:
        if value.startswith("$2x$"):
            return "$2x$ bcrypt hashes (a buggy legacy variant) are not supported; rehash with $2b$ or $2y$"
        return "not a bcrypt hash (want $2a$, $2b$ or $2y$ as made by `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
    cost = int(m["cost"])
    if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
        slow = " (each login would take minutes or more)" if cost > BCRYPT_MAX_COST else ""
        return (f"bcrypt cost {cost} is out of range ({BCRYPT_MIN_COST}..{BCRYPT_MAX_COST}){slow}; "
                "10 to 12 is usual")
    return None
