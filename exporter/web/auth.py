"""Who may ask: HTTP basic auth against bcrypt hashes, configured response headers, loopback peers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import hmac
import ipaddress
import logging
import os
from collections.abc import Mapping

import bcrypt
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from exporter.log import kv

log = logging.getLogger("qualitygate.web")

REALM = "qualitygate"
BCRYPT_MAX_PASSWORD = 72  # bcrypt reads only the first 72 bytes; Go's bcrypt (the toolkit's) cuts there too
AUTH_CACHE_SIZE = 1024



def headers_middleware(headers: Mapping[str, str]) -> Middleware:
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
        if getattr(request.match_info.handler, "own_credentials", False):
            return await handler(request)  # the evidence route checks its own bearer token (web/evidence.py)
        user = await self.authenticate(request.headers.get("Authorization"))
        if user is None:
            log.debug("unauthorized request", extra=kv(path=request.path, remote=request.remote))
            raise web.HTTPUnauthorized(text="Unauthorized\n", headers={"WWW-Authenticate": self.challenge})
        request["user"] = user
        return await handler(request)


__all__ = ["BasicAuth", "Middleware", "authenticates", "headers_middleware", "is_loopback", "parse_basic",
           "peer_is_loopback"]


def authenticates(middlewares: list[Middleware]) -> bool:
    """Whether one of these middlewares is basic auth (every request then carries a user)."""
    return any(isinstance(getattr(m, "__self__", None), BasicAuth) for m in middlewares)


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


def is_loopback(peer: object) -> bool:
    """Whether a transport's peername is on the loopback interface (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return False  # unknown peers (a Unix socket, a closed transport) are not trusted
    try:
        address = ipaddress.ip_address(peer[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def peer_is_loopback(request: web.Request) -> bool:
    """Whether the request came over a loopback connection (the socket's peer, never a header)."""
    transport = request.transport
    return transport is not None and is_loopback(transport.get_extra_info("peername"))
