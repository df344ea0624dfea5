"""`POST /api/gates/{id}/evidence`: a CI job pushes a report; the gate's kind parses and judges it.

The route has its own credential, a bearer token of the tracker's `push_tokens_file`, so it is
exempt from the web config's basic auth (a CI job holds one push token, not a person's password;
basic auth would make every runner hold a login that also opens the attestation endpoint). It is
not exempt from TLS: the listener serves every route alike. It reads its body itself, as a
stream bounded by --web.max-evidence-bytes, and is exempt from the 64 KiB limit of the others.

Order of refusals: tracker (400/404), token (401: before the body is read, so a stranger's body is
never waited for), gate (404), source (409), size (413), report (400). Nothing is kept before
the state file has committed the push: 202 means stored (it survives kill -9).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from exporter.config.expect import format_number
from exporter.config.model import Config, Gate
from exporter.engine.pushes import Judged, stored_measurements, takes_pushes
from exporter.engine.runtime import Runtime
from exporter.log import kv
from exporter.probes import KINDS, Measurement, ProbeError
from exporter.probes.reading import run_read
from exporter.state.evidence import Push
from exporter.state.store import StorageError

log = logging.getLogger("qualitygate.evidence")

READ_TIMEOUT = 120.0  # seconds for the whole body: a 32 MiB report from a slow runner
PARSE_TIMEOUT = 60.0  # seconds for parsing and hashing one report in the report pool
STORE_TIMEOUT = 10.0  # seconds to wait for the state file to commit before answering 503
PARSING_AT_ONCE = 2  # reports parsed at once (of the report pool's workers: probes keep the rest)
CHUNK = 64 * 1024
# Query parameters: bounded, valid text; they are shown and stored, never used as a path, a command or PromQL.
PARAMS = {"tracker": 128, "commit": 128, "branch": 255, "run_url": 2048, "run_id": 128}


class Refusal(Exception):
    """A push refused with an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers or {}


@dataclass(frozen=True)
class Meta:
    """Where the report was made, as the query said."""

    tracker: str | None
    commit: str
    branch: str
    run_url: str
    run_id: str


def _params(request: web.Request) -> Meta:
    got: dict[str, str] = {}
    for name, limit in PARAMS.items():
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise Refusal(400, f"query parameter {name} given {len(values)} times")
        if not values:
            continue
        value = values[0]
        if len(value) > limit:
            raise Refusal(400, f"query parameter {name} is longer than {limit} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refusal(400, f"query parameter {name} is not valid UTF-8") from None
        if not value.isprintable():
            raise Refusal(400, f"query parameter {name} holds control characters")
        got[name] = value
    run_url = got.get("run_url", "")
    if run_url and not run_url.startswith(("https://", "http://")):
        raise Refusal(400, "run_url must start with https:// or http://")  # it becomes a link on the status page
    return Meta(got.get("tracker"), got.get("commit", ""), got.get("branch", ""), run_url, got.get("run_id", ""))


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _tracker(runtime: Runtime, name: str | None) -> Config:
    if name is None:
        if len(runtime.trackers) != 1:
            raise Refusal(400, "several trackers are loaded: add ?tracker=NAME")
        name = next(iter(runtime.trackers))
    config = runtime.trackers.get(name)
    if config is None:
        raise Refusal(404, f"unknown tracker {name!r}")
    return config


def _gate(config: Config, gate_id: str) -> Gate:
    gate = config.gate(gate_id)
    if gate is None:
        raise Refusal(404, f"unknown gate {gate_id!r} in tracker {config.tracker!r}")
    if KINDS[gate.kind].parse_report is None or not takes_pushes(gate):
        raise Refusal(409, f"gate {gate_id!r} does not take pushes (its source is not push: "
                           f"{gate.kind}: {{push: {{max_age: ...}}}})")
    return gate


async def _body(request: web.Request, limit: int) -> bytes:
    too_large = Refusal(413, f"report larger than --web.max-evidence-bytes ({_size(limit)})")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            # Counted as it arrives (after any Content-Encoding is undone): the bound holds for every body.
            async for chunk in request.content.iter_chunked(CHUNK):
                body += chunk
                if len(body) > limit:
                    raise too_large
    except TimeoutError:
        raise Refusal(408, f"report not received within {READ_TIMEOUT:g}s") from None
    return bytes(body)


def _size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n} bytes"


def _parse(gate: Gate, data: bytes, meta: Meta, counts_hint: bool) -> tuple[Measurement, Push]:
    """Parse and hash in the report pool (both are linear in the body, which may be 32 MiB)."""
    parse = KINDS[gate.kind].parse_report
    assert parse is not None
    m = parse(gate.spec, data, "report")
    for name, value in m.values.items():
        if not math.isfinite(value):
            raise ProbeError(f"report: {name} is {format_number(value)}: no measurement")
    push = Push.of(data, measurements={}, counts=counts_hint, commit=meta.commit, branch=meta.branch,
                   run_url=meta.run_url, run_id=meta.run_id)
    return m, push


def _answer(config: Config, gate: Gate, judged: Judged, push: Push, persisted: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tracker": config.tracker, "gate": gate.id, "kind": gate.kind, "status": judged.outcome,
        "value": judged.values.get("value"), "measurements": judged.values, "message": judged.message,
        "counts": judged.counts, "expect": gate.expect_text, "digest": f"sha256:{push.sha256}", "size": push.size,
        "received_at": push.received_at, "persisted": persisted,
    }
    if judged.delta is not None:
        doc["delta"] = judged.delta
    if not judged.counts:
        doc["why_not_counted"] = (f"branch {push.branch or '(none given)'!r} does not decide this gate "
                                  f"(only {gate.spec.push.branch!r} does)")
    if not persisted:
        doc["note"] = "kept in memory only (--storage.path ''): a restart forgets this push"
    return doc


def evidence_handler(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler of POST /api/gates/{id}/evidence."""
    parsing = asyncio.Semaphore(PARSING_AT_ONCE)

    async def post(request: web.Request) -> web.Response:
        """Judge a pushed report: 202 with its judgement (stored when it counts), else 4xx/5xx and nothing kept."""
        try:
            return await _accept(runtime, request, parsing)
        except Refusal as exc:
            response = web.json_response({"error": str(exc)}, status=exc.status, headers=exc.headers)
            if exc.status in (408, 413):
                response.force_close()  # the rest of the body is not read: the connection cannot be reused
            return response

    # Read by the basic-auth and body-deadline middlewares: this route checks its own bearer token
    # and reads its own (larger) body under its own bound.
    post.own_credentials = True  # type: ignore[attr-defined]
    post.reads_own_body = True  # type: ignore[attr-defined]
    return post


async def _accept(runtime: Runtime, request: web.Request, parsing: asyncio.Semaphore) -> web.Response:
    meta = _params(request)
    config = _tracker(runtime, meta.tracker)
    token = _bearer(request)
    if token is None or not runtime.evidence.token_ok(config.tracker, token):
        why = "no push token" if token is None else "wrong push token"
        if not runtime.evidence.has_tokens(config.tracker):
            why += f" (tracker {config.tracker!r} has no push_tokens_file)"
        log.info("push refused", extra=kv(tracker=config.tracker, gate=request.match_info["id"],
                                          reason=why, remote=request.remote))
        raise Refusal(401, why, {"WWW-Authenticate": 'Bearer realm="qualitygate"'})
    gate = _gate(config, request.match_info["id"])
    data = await _body(request, runtime.max_evidence_bytes)
    branch = gate.spec.push.branch
    counts_hint = branch is None or meta.branch == branch
    async with parsing:
        try:
            # A key of its own per push: parallel jobs push one gate at once, and each is parsed.
            parsed, push = await asyncio.wait_for(
                run_read((gate.id, f"push:{uuid.uuid4().hex}"), _parse, gate, data, meta, counts_hint),
                PARSE_TIMEOUT)
        except ProbeError as exc:
            raise Refusal(400, str(exc)) from None
        except TimeoutError:
            raise Refusal(503, f"parsing the report took longer than {PARSE_TIMEOUT:g}s; nothing stored",
                          {"Retry-After": "60"}) from None
    # A reload may have changed or dropped the gate while the report was read: judge only against
    # the config that runs now, and refuse (nothing stored) when the gate is no longer the same.
    now_config = runtime.trackers.get(config.tracker)
    if now_config is None or now_config.gate(gate.id) != gate:
        raise Refusal(409, "the gate changed in a config reload while the report was parsed; nothing stored, "
                           "push again")
    judged = runtime.evidence.judge(config.tracker, gate, parsed, meta.branch, meta.run_id, push.sha256)
    push = Push(push.received_at, push.sha256, push.size, stored_measurements(parsed, judged.delta),
                judged.counts, push.commit, push.branch, push.run_url, push.run_id, push.body)
    persisted = await _store(runtime, config, gate, push)
    runtime.evidence.accept(config.tracker, gate, push, parsed)
    reevaluating = judged.counts and runtime.scheduler is not None and runtime.scheduler.trigger(config.tracker,
                                                                                                   gate.id)
    log.info("push accepted", extra=kv(tracker=config.tracker, gate=gate.id, status=judged.outcome,
                                       counts=judged.counts, branch=push.branch, commit=push.commit, run_id=push.run_id,
                                       size=push.size, persisted=persisted, reevaluating=reevaluating))
    return web.json_response(_answer(config, gate, judged, push, persisted), status=202)


async def _store(runtime: Runtime, config: Config, gate: Gate, push: Push) -> bool:
    """Commit the push; False when there is no state file (memory only). A failure is a 503: nothing acknowledged."""
    store = runtime.store
    if store is None:
        return False
    try:
        await asyncio.wait_for(store.add_push(config.tracker, gate.id, push), STORE_TIMEOUT)
    except StorageError as exc:
        log.error("push not stored", extra=kv(tracker=config.tracker, gate=gate.id, error=str(exc)))
        raise Refusal(503, f"the push could not be stored: {exc}; nothing acknowledged, push again",
                      {"Retry-After": "30"}) from None
    except TimeoutError:
        log.error("push not stored in time", extra=kv(tracker=config.tracker, gate=gate.id))
        raise Refusal(503, f"the state file did not commit the push within {STORE_TIMEOUT:g}s; not acknowledged, "
                           "push again (a retry may store it twice, which judges the same)",
                      {"Retry-After": "30"}) from None
    return True
