"""The HTTP server: /metrics, health, reload, the JSON API."""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING

from aiohttp import web

from exporter.config.model import Config
from exporter.engine.runtime import Runtime
from exporter.exposition.gates import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, exposition_for
from exporter.report.status import gate_json, progress_status
from exporter.state.memory import HISTORY, State
from exporter.web import badges as badge_routes
from exporter.web import statuspage
from exporter.web.attest import attestation_handler, log_write_policy
from exporter.web.auth import Middleware, authenticates
from exporter.web.evidence import evidence_handler
from exporter.web.negotiate import accepts_gzip, wants_openmetrics
from exporter.web.whole import runtime_of, whole_doc

if TYPE_CHECKING:
    from exporter.web.peers import Peers

log = logging.getLogger("qualitygate.web")

RUNTIME = web.AppKey("runtime", Runtime)
LIFECYCLE = web.AppKey("lifecycle", bool)
MAX_BODY = 64 * 1024  # request bodies are small JSON documents (attestations)
# Strict JSON (RFC 8259): a NaN or infinity left in a document is a bug, answered 500, never sent.
STRICT_JSON = functools.partial(json.dumps, allow_nan=False)


def make_app(runtime: Runtime, *, lifecycle: bool = False,
             middlewares: list[Middleware] | None = None, peers: Peers | None = None) -> web.Application:
    """Build the aiohttp application around a runtime (with peers: one of several shards acting as one)."""
    # The peers middleware goes last: basic auth and the body deadline have run when it hands a write on.
    app = web.Application(client_max_size=MAX_BODY,
                          middlewares=[*(middlewares or []), *([peers.middleware] if peers else [])])
    app[RUNTIME] = runtime
    app[LIFECYCLE] = lifecycle
    exposition_for(runtime)  # attached now, so that results from the start on are shown
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_route("POST", "/-/reload", reload)
    app.router.add_route("PUT", "/-/reload", reload)
    app.router.add_get("/api/progress/status", progress)
    app.router.add_get("/api/gates", gates)
    app.router.add_get("/api/gates/{id}", gate_detail)
    app.router.add_post("/api/gates/{id}/attestations", attestation_handler(runtime))
    app.router.add_post("/api/gates/{id}/evidence", evidence_handler(runtime))  # its own token and body bound
    app.on_startup.append(log_write_policy(authenticates(middlewares or [])))
    statuspage.add_routes(app, RUNTIME)  # GET /, /gates/{id}, /assets/*
    badge_routes.add_routes(app, RUNTIME)  # GET /badge/tracker.svg, /badge/phase/{id}.svg, /badge/gate/{id}.svg
    if peers is not None:
        peers.install(app)  # GET /-/shard/state, /-/shard/handover (signed peer requests only)
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, or OpenMetrics when the Accept header asks for it; gzip when accepted."""
    runtime = request.app[RUNTIME]
    openmetrics = wants_openmetrics(request.headers.get("Accept", ""))
    compress = accepts_gzip(request.headers.get("Accept-Encoding", ""))
    # The exposition keeps compressed pieces of unchanged gates: no whole-body gzip per scrape.
    body = exposition_for(runtime).render(openmetrics, gzip=compress)
    headers = {"Content-Type": OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE}
    if compress:
        headers["Content-Encoding"] = "gzip"
    headers["Vary"] = "Accept, Accept-Encoding"
    return web.Response(body=body, headers=headers)


async def healthy(request: web.Request) -> web.Response:
    """200 while the process runs and its scheduler with it; 503 while the scheduler is down (restarting)."""
    if not request.app[RUNTIME].healthy:
        return web.Response(status=503, text="Unhealthy: the scheduler is not running (restarting).\n")
    return web.Response(text="Healthy.\n")


async def ready(request: web.Request) -> web.Response:
    """200 once the config is loaded and every gate has been scheduled once."""
    if request.app[RUNTIME].ready:
        return web.Response(text="Ready.\n")
    return web.Response(status=503, text="Not ready: gates are still being scheduled.\n")


async def reload(request: web.Request) -> web.Response:
    """Reload the config (only with --web.enable-lifecycle)."""
    if not request.app[LIFECYCLE]:
        return web.Response(status=403, text="Lifecycle API is not enabled (--web.enable-lifecycle).\n")
    runtime = request.app[RUNTIME]
    # This request waits for the reload's slices: it must not hold them (serve's Foreground) meanwhile.
    runtime.foreground.leave(request.transport)
    errors = await runtime.reload()
    if errors:
        return web.Response(status=500, text="failed to reload config:\n" + "\n".join(errors) + "\n")
    return web.Response(text="Reloaded.\n")


def _tracker(request: web.Request) -> tuple[Config, State] | None:
    """The tracker ?tracker= names (or the only one), None when several are loaded and none is named."""
    runtime = runtime_of(request, RUNTIME)
    name = request.query.get("tracker")
    if name is None and len(runtime.trackers) == 1:
        name = next(iter(runtime.trackers))
    if name is None:
        return None
    config = runtime.trackers.get(name)
    if config is None:
        raise web.HTTPNotFound(text=f"unknown tracker {name!r}\n")
    return config, runtime.states[name]


async def progress(request: web.Request) -> web.Response:
    """The tracker's progress document; with several trackers and no ?tracker=, their list."""
    found = _tracker(request)
    if found is None:
        runtime = runtime_of(request, RUNTIME)
        items = []
        for name, cfg in runtime.trackers.items():
            doc = whole_doc(request, progress_status(cfg, runtime.states[name]))
            items.append({"tracker": name, "title": cfg.title, "overall_completion": doc["overall_completion"],
                          "url": f"/api/progress/status?tracker={name}"})
        return web.json_response(dumps=STRICT_JSON, data={"trackers": items})
    return web.json_response(dumps=STRICT_JSON, data=whole_doc(request, progress_status(*found)))


async def gates(request: web.Request) -> web.Response:
    """Every gate's current outcome."""
    found = _tracker(request)
    if found is None:
        raise web.HTTPBadRequest(text="several trackers are loaded: add ?tracker=NAME\n")
    config, state = found
    doc = whole_doc(request, {"tracker": config.tracker,
                              "gates": [gate_json(g, state.gates.get(g.id)) for g in config.gates]})
    return web.json_response(dumps=STRICT_JSON, data=doc)


async def gate_detail(request: web.Request) -> web.Response:
    """One gate with its recent evaluations."""
    found = _tracker(request)
    if found is None:
        raise web.HTTPBadRequest(text="several trackers are loaded: add ?tracker=NAME\n")
    config, state = found
    gate = config.gate(request.match_info["id"])
    if gate is None:
        raise web.HTTPNotFound(text="unknown gate\n")
    st = state.gates.get(gate.id)
    doc = gate_json(gate, st)
    doc["tracker"] = config.tracker
    doc["interval_seconds"] = gate.interval
    doc["timeout_seconds"] = gate.timeout
    doc["counts"] = dict(st.counts) if st else {}
    doc["history"] = [r.to_json() for r in reversed(st.history)] if st else []
    doc["history_limit"] = HISTORY
    if gate.kind == "manual":
        store = request.app[RUNTIME].store
        doc["attestations"] = [a.to_json() for a in store.attestations(config.tracker, gate.id)] if store else []
    return web.json_response(dumps=STRICT_JSON, data=doc)
