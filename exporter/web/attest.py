"""`POST /api/gates/{id}/attestations`: record a person's attestation of a manual gate.

A write from anyone who can reach the port would let a stranger pass a gate, so without basic
auth (no `basic_auth_users` in the web config) only loopback clients may write; with it, the
authenticated user is recorded as the attester.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from exporter.engine.runtime import Runtime
from exporter.log import kv
from exporter.state.attestation import AttestationError, check_body, manual_gate, understand, understood_text
from exporter.state.store import Attestation
from exporter.web.auth import peer_is_loopback

log = logging.getLogger("qualitygate.attest")

PERSIST_WAIT = 5.0  # seconds to wait for the state file before answering from memory
LOOPBACK_ONLY = ("attestations from other hosts need basic auth: set basic_auth_users in --web.config.file "
                 "(without it, only loopback clients may write)")


def may_write(request: web.Request) -> bool:
    """Whether this request may write: it is authenticated, or (no basic auth configured) from loopback,
    here or (a write a peer shard handed on, its signature checked in web/peers.py) at that shard."""
    return (request.get("user") is not None or peer_is_loopback(request)
            or request.get("qualitygate.vouched_loopback") is True)


def log_write_policy(authenticated: bool) -> Callable[[web.Application], Awaitable[None]]:
    """An on_startup hook that says once who may write attestations."""

    async def say(app: web.Application) -> None:
        if authenticated:
            log.info("attestations: basic auth users may write; the user is recorded as the attester")
        else:
            log.info("attestations accepted from loopback clients only: no basic_auth_users in --web.config.file")

    return say


def _refuse(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def attestation_handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler that records an attestation and re-evaluates the gate at once."""

    async def post(request: web.Request) -> web.Response:
        """Record an attestation: 201, or 4xx with {"error": ...} and nothing stored."""
        if not may_write(request):
            log.info("attestation refused: not a loopback client and no basic auth", extra=kv(remote=request.remote))
            return _refuse(LOOPBACK_ONLY, 403)
        tracker = request.query.get("tracker")
        if tracker is None and len(runtime.trackers) > 1:
            return _refuse("several trackers are loaded: add ?tracker=NAME", 400)
        try:
            config, gate = manual_gate(list(runtime.trackers.values()), request.match_info["id"], tracker)
            if request.content_type != "application/json":
                raise AttestationError("send the attestation as Content-Type: application/json", 415)
            try:
                doc = json.loads(await request.read())
            except web.HTTPRequestEntityTooLarge as exc:
                raise AttestationError(f"request body too large: {exc.text or 'refused'}", 413) from None
            except (ValueError, UnicodeDecodeError) as exc:
                raise AttestationError(f"body is not valid JSON: {exc}") from None
            reading, note, by = check_body(doc)
            value = understand(reading, gate.expect)
        except AttestationError as exc:
            return _refuse(str(exc), exc.status)
        store = runtime.store
        if store is None:
            return _refuse("attestations need a state file: start the exporter with --storage.path", 503)
        user = request.get("user")
        att = Attestation(value, time.time(), user or by or "anonymous", note)
        done = asyncio.wrap_future(store.attest(config.tracker, gate.id, att))
        # Answer once it is on disk; if the disk is failing, the attestation still counts from memory.
        done.add_done_callback(lambda f: f.exception())  # a late failure is counted by the store, not raised here
        finished, _ = await asyncio.wait({done}, timeout=PERSIST_WAIT)
        persisted = bool(finished) and done.exception() is None
        scheduled = runtime.scheduler is not None and runtime.scheduler.trigger(config.tracker, gate.id)
        shown = understood_text(reading, gate.expect)
        log.info("attestation recorded", extra=kv(tracker=config.tracker, gate=gate.id, value=shown, by=att.by,
                                                  persisted=persisted))
        return web.json_response({"tracker": config.tracker, "gate": gate.id, "attestation": att.to_json(),
                                  "understood": shown, "persisted": persisted, "reevaluating": scheduled},
                                 status=201)

    return post
