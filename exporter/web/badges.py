"""HTTP routes for README badges: /badge/tracker.svg, /badge/phase/{id}.svg, /badge/gate/{id}.svg.

With several trackers loaded, `?tracker=NAME` picks one; without it, the tracker badge sums
every tracker and a phase or gate id is looked up in all of them (404 when it is unknown or
ambiguous).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from exporter.engine.runtime import Runtime
from exporter.report import badges
from exporter.report.status import progress_status
from exporter.web.whole import runtime_of, whole_doc


def add_routes(app: web.Application, runtime_key: web.AppKey[Runtime]) -> None:
    """Register the three badge routes on the app."""
    routes = _BadgeRoutes(runtime_key)
    app.router.add_get("/badge/tracker.svg", routes.tracker)
    app.router.add_get("/badge/phase/{id}.svg", routes.phase)
    app.router.add_get("/badge/gate/{id}.svg", routes.gate)


class _BadgeRoutes:
    def __init__(self, runtime_key: web.AppKey[Runtime]):
        self.key = runtime_key

    def _docs(self, request: web.Request) -> list[dict[str, Any]]:
        runtime = runtime_of(request, self.key)  # every shard's gates with --shard.peers (web/whole.py)
        name = request.query.get("tracker")
        if name is not None:
            if name not in runtime.trackers:
                raise web.HTTPNotFound(text="unknown tracker\n")
            return [whole_doc(request, progress_status(runtime.trackers[name], runtime.states[name]))]
        return [whole_doc(request, progress_status(cfg, runtime.states[n])) for n, cfg in runtime.trackers.items()]

    async def tracker(self, request: web.Request) -> web.Response:
        """Overall completion (of every tracker, summed, unless ?tracker= picks one)."""
        docs = self._docs(request)
        if len(docs) == 1:
            return _svg(request, badges.tracker_badge(docs[0]))
        gates = [g for d in docs for g in d["gates"]]
        passed = sum(g["status"] == "pass" for g in gates)
        combined = {"gates": gates, "overall_completion": passed / len(gates) if gates else 0.0}
        return _svg(request, badges.tracker_badge(combined))

    async def phase(self, request: web.Request) -> web.Response:
        """One phase's completion."""
        return self._one(request, badges.phase_badge, "phase")

    async def gate(self, request: web.Request) -> web.Response:
        """One gate's status."""
        return self._one(request, badges.gate_badge, "gate")

    def _one(self, request: web.Request, badge: Callable[[dict[str, Any], str], str | None], what: str
             ) -> web.Response:
        """The badge of the one phase or gate with the path's id; 404 if none or ambiguous."""
        found = [s for s in (badge(d, request.match_info["id"]) for d in self._docs(request)) if s]
        if len(found) != 1:
            raise web.HTTPNotFound(text=f"unknown {what}\n" if not found else f"{what} id in several trackers: "
                                   "add ?tracker=NAME\n")
        return _svg(request, found[0])


def _svg(request: web.Request, svg: str) -> web.Response:
    """The badge with revalidation headers: a live status must not be served stale by image proxies."""
    body = svg.encode("utf-8")
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": badges.CACHE_CONTROL, "ETag": etag}
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": badges.CONTENT_TYPE})
