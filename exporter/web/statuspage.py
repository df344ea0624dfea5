"""The human status page: `GET /`, `GET /gates/{id}` and their assets, rendered server-side with Jinja2.

Every string from a config or a probe reaches HTML only through Jinja2 with autoescaping on, and
the pages carry a Content-Security-Policy that allows no inline script, so an escaping slip
still could not run code. The page's one script (`/assets/status.js`) re-fetches the same URL
with `?partial=1` every 10 s and swaps the content of `<main>`, so filters survive a refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import time
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web

from exporter import __version__
from exporter.config.durations import format_duration
from exporter.config.model import TIERS, Gate
from exporter.engine.runtime import Runtime
from exporter.model import STATUSES
from exporter.report.badges import percent
from exporter.report.status import progress_status, rfc3339
from exporter.state.attestation import format_value
from exporter.web.filters import BadRequest, filter_links, parse_filters, url
from exporter.web.humanize import ago, checks, format_in, summary, utc_text
from exporter.web.negotiate import accepts_gzip
from exporter.web.views import STATUS_LABELS, gate_view, tracker_view

REFRESH_SECONDS = 10
ASSET_TYPES = {"status.css": "text/css", "status.js": "text/javascript", "favicon.svg": "image/svg+xml"}
# No inline script or style at all: the page's JS and CSS are files served below /assets/.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    """A static file, read once at start-up."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """The files of exporter/web/assets, by name (only those listed in ASSET_TYPES)."""
    root = importlib.resources.files("exporter.web") / "assets"
    out = {}
    for name, ctype in ASSET_TYPES.items():
        body = (root / name).read_bytes()
        out[name] = Asset(body, ctype, hashlib.sha256(body).hexdigest()[:16])
    return out


def make_environment() -> jinja2.Environment:
    """The template environment: package templates, autoescaping on for everything."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("exporter.web", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda r: percent(r, 0).replace("%", " %")
    env.filters["rfc3339"] = rfc3339
    env.filters["utc"] = utc_text
    env.filters["duration"] = format_duration
    return env


class StatusPage:
    """The page handlers, bound to the app key under which the runtime lives."""

    def __init__(self, runtime_key: web.AppKey[Runtime]):
        self.key = runtime_key
        self.env = make_environment()
        self.assets = load_assets()

    def asset_url(self, name: str) -> str:
        """An asset's URL, versioned by its content so it can be cached for long."""
        return f"/assets/{name}?v={self.assets[name].etag}"

    # --- handlers ---

    async def index(self, request: web.Request) -> web.Response:
        """The overview of one tracker, or the list of trackers when several are loaded."""
        runtime = request.app[self.key]
        try:
            filters = parse_filters(request.query)
        except BadRequest as exc:
            return await self._error(request, 400, "Bad filter", str(exc))
        name = request.query.get("tracker")
        if name is None and len(runtime.trackers) != 1:
            return await self._render(request, "trackers.html", "_trackers_main.html",
                                      trackers=self._tracker_list(runtime), title="Trackers")
        if name is None:
            name = next(iter(runtime.trackers))
        config = runtime.trackers.get(name)
        if config is None:
            return await self._error(request, 404, "Unknown tracker", "No tracker of that name is loaded.")
        now = time.time()
        view = tracker_view(config, runtime.states[name], filters, now)
        keep = {"tracker": name} if request.query.get("tracker") is not None else {}
        return await self._render(request, "index.html", "_index_main.html", t=view, filters=filters,
                                  filter_links=filter_links(filters, keep), keep=keep, title=config.title)

    async def gate(self, request: web.Request) -> web.Response:
        """One gate: details, uptime, recent evaluations and attestations."""
        runtime = request.app[self.key]
        gate_id = request.match_info["id"]
        name = request.query.get("tracker")
        if name is None:
            owners = [n for n, c in runtime.trackers.items() if c.gate(gate_id) is not None]
            if len(owners) > 1:
                return await self._error(request, 400, "Several trackers have this gate",
                                         "Add ?tracker=NAME to the address.",
                                         links=[(url(f"/gates/{gate_id}", {"tracker": n}), n) for n in owners])
            name = owners[0] if owners else None
        config = runtime.trackers.get(name) if name is not None else None
        gate = config.gate(gate_id) if config else None
        if config is None or gate is None:
            return await self._error(request, 404, "Unknown gate", "No gate with that id is configured.")
        now = time.time()
        st = runtime.states[config.tracker].gates.get(gate.id)
        view = gate_view(gate, st, now)
        history = [{"outcome": r.outcome, "label": STATUS_LABELS[r.outcome], "started": r.started,
                    "ago": ago(r.started, now), "checks": checks(gate, r.measurements),
                    "value": summary(gate, r.measurements),
                    "duration": format_in(r.duration, "ms" if r.duration < 1 else "s"), "message": r.message}
                   for r in reversed(st.history)] if st else []
        keep = {"tracker": config.tracker} if len(runtime.trackers) > 1 else {}
        return await self._render(request, "gate.html", "_gate_main.html", g=view, history=history,
                                  counts=dict(st.counts) if st else {},
                                  attestations=_attestations(runtime, config.tracker, gate, now),
                                  tracker_title=config.title, keep=keep, title=gate.title)

    async def asset(self, request: web.Request) -> web.Response:
        """A static asset with a validator; the ?v= URLs make long caching safe."""
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound(text="no such asset\n")
        etag = f'"{asset.etag}"'
        headers = {"ETag": etag, "Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, content_type=asset.content_type,
                            charset="utf-8" if asset.content_type.startswith("text/") else None, headers=headers)

    # --- helpers ---

    async def _render(self, request: web.Request, page: str, fragment: str, status: int = 200,
                      **ctx: Any) -> web.Response:
        ctx.setdefault("refresh_seconds", REFRESH_SECONDS if status == 200 else 0)
        ctx.update(version=__version__, asset=self.asset_url, url=url,
                   statuses=STATUSES, tiers=TIERS, status_labels=STATUS_LABELS)
        partial = request.query.get("partial") == "1"
        template = self.env.get_template(fragment if partial else page)
        # The context is built afresh on the loop; rendering it in a thread keeps probes and scrapes moving.
        text = await asyncio.to_thread(template.render, **ctx)
        response = web.Response(status=status, text=text, content_type="text/html", charset="utf-8",
                                headers=PAGE_HEADERS)
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            # Uptime strips repeat a lot: gzip makes the page ~10x smaller. Chosen here, not by
            # aiohttp, whose choice is a substring test that ignores `gzip;q=0`.
            response.enable_compression(web.ContentCoding.gzip)
        response.headers["Vary"] = "Accept-Encoding"
        return response

    async def _error(self, request: web.Request, status: int, heading: str, message: str,
                     links: list[tuple[str, str]] | None = None) -> web.Response:
        return await self._render(request, "error.html", "_error_main.html", status=status, title=heading,
                                  heading=heading, message=message, links=links or [])

    def _tracker_list(self, runtime: Runtime) -> list[dict[str, Any]]:
        out = []
        for name, config in runtime.trackers.items():
            doc = progress_status(config, runtime.states[name])
            counts = {s: sum(1 for g in doc["gates"] if g["status"] == s) for s in STATUSES}
            out.append({"name": name, "title": config.title, "completion": doc["overall_completion"],
                        "counts": counts, "total": len(config.gates), "blockers": len(doc["blockers"])})
        return out


def _attestations(runtime: Runtime, tracker: str, gate: Gate, now: float) -> list[dict[str, Any]] | None:
    """A manual gate's stored attestations, newest first; None when there is no store to ask."""
    store = runtime.store
    if store is None:
        return None
    # In the unit the gate's expect is written in (`95%`), as it was attested.
    return [{"at": att.at, "ago": ago(att.at, now), "by": att.by, "note": att.note,
             "value": format_value(att.value, gate.expect)} for att in store.attestations(tracker, gate.id)]


def add_routes(app: web.Application, runtime_key: web.AppKey[Runtime]) -> None:
    """Serve the status page at `/`, gate pages at `/gates/{id}` and their assets at `/assets/`."""
    page = StatusPage(runtime_key)
    app.router.add_get("/", page.index)
    app.router.add_get("/gates/{id}", page.gate)
    app.router.add_get("/assets/{name}", page.asset)
