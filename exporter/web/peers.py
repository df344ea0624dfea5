"""The peer client: shards started with `--shard.peers` answer as one exporter.

Request path (docs/scaling.md draws it in words):

- A write (attestation, pushed evidence) for a gate another shard owns is checked here first
  (basic auth has run; the loopback rule or the push token is checked now), then handed to the
  owner, signed (web/peersign.py) with the caller's credentials passed on; the owner's answer
  is the answer. An owner that does not answer: 503 naming it, nothing stored here.
- A gate's own page and API (`/gates/{id}`, `/api/gates/{id}`) are asked of its owner.
- The tracker-wide reads (`/`, `/api/progress/status`, `/api/gates`, badges) are rendered here from
  every shard's gate states, fetched concurrently from `/-/shard/state` with a short timeout and
  kept CACHE_SECONDS; a shard that does not answer leaves its gates `unknown` (web/whole.py).
- A signed request from a peer is always answered locally: never handed on, never gathered.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from exporter.config.model import Config
from exporter.engine.runtime import Runtime
from exporter.engine.sharding import owner_of
from exporter.log import kv
from exporter.model import ERROR, Result
from exporter.state.memory import GateState, State
from exporter.web import evidence, handover
from exporter.web.attest import may_write
from exporter.web.auth import peer_is_loopback
from exporter.web.negotiate import accepts_gzip
from exporter.web.peersign import ANSWER, PREFIX, Claim, SignatureError, Signer, is_signed
from exporter.web.peerwire import state_from, state_json
from exporter.web.whole import WHOLE_KEY, Missing, Whole

log = logging.getLogger("qualitygate.peers")

PEER_KEY = "qualitygate.peer"  # request key: the Claim of a verified peer request
VOUCHED_KEY = "qualitygate.vouched_loopback"  # read by attest.may_write
GATHER_TIMEOUT = 2.0  # seconds for a peer's state (3,000 gates take ~0.5 s cold): then unknown, not a slow page
PROXY_TIMEOUT = 5.0  # seconds for a gate's page or API from its owner
WRITE_TIMEOUT = 30.0  # an attestation waits up to 5 s for the owner's disk
EVIDENCE_TIMEOUT = 200.0  # a pushed report: the owner reads (120 s) and parses (60 s) it
CONNECT_TIMEOUT = 2.0
CACHE_SECONDS = 2.0
PAGES = frozenset({"/", "/phases/{phase}/steps/{step}"})  # these show uptime strips: gathered with buckets
GATHERED = PAGES | frozenset({"/api/progress/status", "/api/gates", "/badge/tracker.svg", "/badge/phase/{id}.svg",
                      "/badge/gate/{id}.svg"})
OWNED_READS = frozenset({"/gates/{id}", "/api/gates/{id}"})
ATTEST, EVIDENCE = "/api/gates/{id}/attestations", "/api/gates/{id}/evidence"
PASSED_ON = ("Content-Type", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "Cache-Control",
             "ETag", "Vary", "WWW-Authenticate", "Retry-After")
CHUNK = 64 * 1024


@dataclass(frozen=True)
class PeerSettings:
    """`--shard.peers` and the shard this process is."""

    template: str  # e.g. http://qualitygate-{index}.qualitygate:9916
    index: int
    count: int
    key: bytes  # derived from --shard.secret-file

    def url(self, shard: int) -> str:
        """A shard's base URL."""
        return self.template.replace("{index}", str(shard)).rstrip("/")


class Peers:
    """Gathers reads from the other shards and hands writes to the owning one."""

    def __init__(self, settings: PeerSettings, runtime: Runtime):
        self.settings = settings
        self.runtime = runtime
        self.signer = Signer(settings.key, settings.index)
        self._session: aiohttp.ClientSession | None = None
        self._cache: dict[bool, tuple[float, Whole]] = {}
        self._locks = {False: asyncio.Lock(), True: asyncio.Lock()}
        self._placement: dict[str, tuple[Config, dict[str, int]]] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """One pooled client for every peer (created on the loop, at first use)."""
        if self._session is None:
            # Identity: the aiohttp client would undo gzip anyway; the answer is compressed here if asked.
            self._session = aiohttp.ClientSession(headers={"Accept-Encoding": "identity"}, auto_decompress=True)
        return self._session

    def placement(self, config: Config) -> dict[str, int]:
        """gate id -> owning shard, for a whole config (computed once per config object)."""
        cached = self._placement.get(config.tracker)
        if cached is not None and cached[0] is config:
            return cached[1]
        owners = {g.id: owner_of(config, g.id, self.settings.count) or 0 for g in config.gates}
        self._placement[config.tracker] = (config, owners)
        return owners

    async def get(self, shard: int, path_qs: str, timeout: float, headers: dict[str, str] | None = None,
                  user: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """A signed GET to a peer: (status, headers, body); aiohttp.ClientError or TimeoutError when it fails."""
        proof = self.signer.sign("GET", path_qs, user=user)
        signed = {**(headers or {}), **proof}
        url = URL(self.settings.url(shard) + path_qs, encoded=True)
        async with self.session.get(url, headers=signed, timeout=aiohttp.ClientTimeout(
                total=timeout, connect=min(timeout, CONNECT_TIMEOUT))) as resp:
            body = await resp.read()
            # What a shard stores or merges (/-/shard/*) must come from a peer holding the secret.
            if path_qs.startswith("/-/shard/") and resp.status == 200 and not self.signer.answer_ok(
                    proof[PREFIX + "Nonce"], body, resp.headers.get(ANSWER, "")):
                raise aiohttp.ClientPayloadError(f"shard {shard}'s answer is not signed with the shared secret")
            return resp.status, dict(resp.headers), body

    # --- gathered reads ---------------------------------------------------------------------

    async def whole(self, buckets: bool) -> Whole:
        """Every shard's gates, at most CACHE_SECONDS old (concurrent askers share one gathering)."""
        cached = self._cache.get(buckets)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        async with self._locks[buckets]:
            cached = self._cache.get(buckets)
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
            others = [i for i in range(self.settings.count) if i != self.settings.index]
            answers = await asyncio.gather(*(self._state_of(i, buckets) for i in others))
            whole = self._merge(dict(zip(others, answers, strict=True)))
            self._cache[buckets] = (time.monotonic(), whole)
            return whole

    async def _state_of(self, shard: int, buckets: bool) -> dict[str, Any] | Missing:
        url = self.settings.url(shard)
        try:
            status, _, body = await self.get(shard, f"/-/shard/state?buckets={int(buckets)}", GATHER_TIMEOUT)
            if status != 200:
                return Missing(shard, url, f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
            doc: dict[str, Any] = json.loads(body)
            return doc
        except TimeoutError:
            return Missing(shard, url, f"no answer within {GATHER_TIMEOUT:g}s")
        except (aiohttp.ClientError, ValueError) as exc:
            return Missing(shard, url, str(exc) or type(exc).__name__)

    def _merge(self, answers: dict[int, dict[str, Any] | Missing]) -> Whole:
        now = time.time()
        missing = tuple(a for a in answers.values() if isinstance(a, Missing))
        for m in missing:
            log.warning("shard did not answer", extra=kv(shard=m.shard, url=m.url, error=m.error))
        states: dict[str, State] = {}
        unknown: dict[str, dict[str, Missing]] = {}
        for name, config in self.runtime.whole.items():
            local = self.runtime.states.get(name, State())
            state = states[name] = State()
            for gate_id, owner in self.placement(config).items():
                if owner == self.settings.index:
                    st = local.gates.get(gate_id)
                    if st is not None:
                        state.gates[gate_id] = st
                    continue
                answer = answers.get(owner)
                if isinstance(answer, Missing) or answer is None:
                    miss = answer or Missing(owner, self.settings.url(owner), "not asked")
                    # An error, never a pass: the page shows it failing; whole_doc calls it unknown.
                    message = f"unknown: shard {owner} ({miss.url}) did not answer: {miss.error}"
                    state.gates[gate_id] = GateState(result=Result(gate_id, ERROR, now, 0.0, {}, message))
                    unknown.setdefault(name, {})[gate_id] = miss
                    continue
                doc = answer.get("trackers", {}).get(name, {}).get(gate_id)
                if doc is not None:
                    state.gates[gate_id] = state_from(doc)
        return Whole(dict(self.runtime.whole), states, unknown, missing)

    def local_state(self, buckets: bool) -> dict[str, Any]:
        """This shard's gate states, for a peer's gathering."""
        return {"shard": self.settings.index, "count": self.settings.count,
                "trackers": {name: {gid: state_json(st, buckets) for gid, st in state.gates.items()}
                             for name, state in self.runtime.states.items()}}

    # --- the middleware ---------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Verify peer requests; hand foreign writes to their owner; gather tracker-wide reads."""
        route = request.match_info.route.resource
        canonical = route.canonical if route is not None else ""
        if is_signed(request.headers):
            refused = await self._verify(request, canonical)
            return refused if refused is not None else await handler(request)
        if canonical in (ATTEST, EVIDENCE) and request.method == "POST":
            found = self._owner(request)
            if found is not None and found[1] != self.settings.index:
                return await self._forward(request, handler, canonical, *found)
        elif canonical in OWNED_READS and request.method in ("GET", "HEAD"):
            found = self._owner(request)
            if found is not None and found[1] != self.settings.index:
                return await self._proxy(request, canonical, *found)
        elif canonical in GATHERED and request.method in ("GET", "HEAD"):
            request[WHOLE_KEY] = await self.whole(buckets=canonical in PAGES)
        return await handler(request)

    async def _verify(self, request: web.Request, canonical: str) -> web.Response | None:
        try:
            claim: Claim = self.signer.verify(request.method, request.raw_path, request.headers)
            # The one claim that grants something (loopback) must be about this very body.
            if canonical == ATTEST and hashlib.sha256(await request.read()).hexdigest() != claim.body_sha256:
                raise SignatureError("body does not match the shard signature")
            user = request.get("user")
            if user is not None and claim.user is not None and claim.user != user:
                raise SignatureError("the signed user is not the authenticated one")
        except SignatureError as exc:
            log.warning("shard request refused", extra=kv(path=request.path, remote=request.remote, error=str(exc)))
            return web.json_response({"error": str(exc)}, status=401)
        request[PEER_KEY] = claim
        request[VOUCHED_KEY] = claim.loopback
        return None

    def _owner(self, request: web.Request) -> tuple[str, int, str] | None:
        """(tracker, owning shard, gate id) of the path's gate; None when this shard should answer itself."""
        gate_id = request.match_info.get("id", "")
        name = request.query.get("tracker")
        if name is None:
            having = [n for n, c in self.runtime.whole.items() if c.gate(gate_id) is not None]
            if len(having) != 1:
                return None  # unknown or ambiguous: the local handler says so
            name = having[0]
        config = self.runtime.whole.get(name)
        owner = owner_of(config, gate_id, self.settings.count) if config is not None else None
        return None if owner is None else (name, owner, gate_id)

    async def _forward(self, request: web.Request, handler: Handler, canonical: str, tracker: str, owner: int,
                       gate_id: str) -> web.StreamResponse:
        # Checked here first: a caller this shard would refuse gets this shard's refusal, unforwarded.
        if canonical == ATTEST and not may_write(request):
            return await handler(request)
        if canonical == EVIDENCE:
            token = _bearer(request)
            if token is None or not self.runtime.evidence.token_ok(tracker, token):
                return await handler(request)
        try:
            # An attestation's body was read by the body deadline (64 KiB); a report is read here, bounded.
            body = await request.read() if canonical == ATTEST else await _bounded_body(
                request, self.runtime.max_evidence_bytes)
        except _TooLarge as exc:
            response = web.json_response({"error": str(exc)}, status=413)
            response.force_close()  # the rest of the body is not read
            return response
        except TimeoutError:
            response = web.json_response({"error": f"report not received within {evidence.READ_TIMEOUT:g}s"},
                                         status=408)
            response.force_close()
            return response
        headers = {k: v for k in ("Content-Type", "Authorization") if (v := request.headers.get(k)) is not None}
        headers.update(self.signer.sign("POST", request.raw_path, body, user=request.get("user"),
                                        loopback=peer_is_loopback(request)))
        url = self.settings.url(owner)
        total = EVIDENCE_TIMEOUT if canonical == EVIDENCE else WRITE_TIMEOUT
        try:
            async with self.session.post(URL(url + request.raw_path, encoded=True), data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=total, connect=CONNECT_TIMEOUT)) as resp:
                answer = await resp.read()
                log.info("write handed to its shard", extra=kv(tracker=tracker, gate=gate_id, shard=owner,
                                                               status=resp.status))
                return web.Response(status=resp.status, body=answer, headers=_passed_on(resp.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            log.error("owning shard did not answer a write", extra=kv(tracker=tracker, gate=gate_id, shard=owner,
                                                                     url=url, error=reason))
            return web.json_response(
                {"error": f"gate {gate_id!r} of tracker {tracker!r} belongs to shard {owner} ({url}), which did not "
                          f"answer ({reason}); nothing was stored on shard {self.settings.index}: send it again",
                 "shard": owner, "tracker": tracker, "gate": gate_id},
                status=503, headers={"Retry-After": "10"})

    async def _proxy(self, request: web.Request, canonical: str, tracker: str, owner: int, gate_id: str
                     ) -> web.StreamResponse:
        headers = {k: v for k in ("Authorization", "Accept", "If-None-Match") if (v := request.headers.get(k))}
        url = self.settings.url(owner)
        try:
            status, got, body = await self.get(owner, request.raw_path, PROXY_TIMEOUT, headers, request.get("user"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            text = (f"gate {gate_id!r} of tracker {tracker!r} belongs to shard {owner} ({url}), which did not "
                    f"answer ({reason}): its status is unknown")
            if canonical == "/api/gates/{id}":
                return web.json_response({"id": gate_id, "tracker": tracker, "status": "unknown", "shard": owner,
                                          "error": text}, status=503)
            return web.Response(status=503, text=text + "\n", headers={"Cache-Control": "no-cache"})
        response = web.Response(status=status, body=body, headers=_passed_on(got))
        if status == 200 and accepts_gzip(request.headers.get("Accept-Encoding", "")):
            response.enable_compression(web.ContentCoding.gzip)
        return response

    # --- wiring -----------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        """Add the peer routes and the lifecycle (handover at start, client closed at the end)."""
        state = _own_credentials(self._state_route)
        app.router.add_get("/-/shard/state", state)
        app.router.add_get("/-/shard/handover", _own_credentials(self._handover_route))
        app.cleanup_ctx.append(self._lifecycle)

    async def _state_route(self, request: web.Request) -> web.Response:
        if PEER_KEY not in request:
            return web.json_response({"error": "for peer shards only (a signed request)"}, status=403)
        return self._signed_answer(request, json.dumps(self.local_state(request.query.get("buckets") == "1")).encode())

    def _signed_answer(self, request: web.Request, body: bytes) -> web.Response:
        """A JSON answer to a verified peer request, signed over that request's nonce (see peersign.ANSWER)."""
        mac = self.signer.answer(request.headers.get(PREFIX + "Nonce", ""), body)
        return web.Response(body=body, content_type="application/json", headers={ANSWER: mac})

    async def _handover_route(self, request: web.Request) -> web.Response:
        if PEER_KEY not in request:
            return web.json_response({"error": "for peer shards only (a signed request)"}, status=403)
        try:
            index, count = int(request.query["index"]), int(request.query["count"])
        except (KeyError, ValueError):
            return web.json_response({"error": "give index and count"}, status=400)
        return self._signed_answer(request, json.dumps(handover.held_for(self.runtime, index, count)).encode())

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(handover.adopt(self))
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


class _TooLarge(Exception):
    pass


async def _bounded_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge(f"report larger than --web.max-evidence-bytes ({limit} bytes)")
    body = bytearray()
    # The same deadline as the owner's own read (evidence.READ_TIMEOUT): a slow sender cannot hold the forwarder.
    async with asyncio.timeout(evidence.READ_TIMEOUT):
        async for chunk in request.content.iter_chunked(CHUNK):
            body += chunk
            if len(body) > limit:
                raise _TooLarge(f"report larger than --web.max-evidence-bytes ({limit} bytes)")
    return bytes(body)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _passed_on(headers: Any) -> dict[str, str]:
    return {k: headers[k] for k in PASSED_ON if k in headers}


def _own_credentials(handler: Handler) -> Handler:
    """Mark a route that checks its own credential (the shard signature): basic auth lets it through."""

    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    route.own_credentials = True  # type: ignore[attr-defined]
    return route
