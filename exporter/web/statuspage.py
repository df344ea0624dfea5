"""The human status page: `GET /`, `GET /gates/{id}` and their assets, rendered server-side with Jinja2.

The overview scales with the tracker by listing counts first and gates only where asked for (see
overview.py); a step's gates come from `/phases/{phase}/steps/{step}` when it is opened, and `?q=`
searches gates by id or title. Every page and fragment carries an ETag computed from its view model
before rendering, so a refresh of an unchanged view is a 304 with no body, and costs no render.

Every string from a config or a probe reaches HTML only through Jinja2 with autoescaping on, and
the pages carry a Content-Security-Policy that allows no inline script, so an escaping slip
still could not run code. The page's one script (`/assets/status.js`) re-fetches the same URL
with `?partial=1` every 10 s (If-None-Match) and swaps the content of `<main>` when it changed, so
filters survive a refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import re
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
from exporter.web.chartblock import ChartCache
from exporter.web.evidenceview import gate_probe
from exporter.web.filters import BadRequest, Filters, filter_links, parse_filters, url
from exporter.web.humanize import ago, checks, format_in, summary, utc_text
from exporter.web.negotiate import accepts_gzip
from exporter.web.overview import MIN_QUERY, SEARCH_LIMIT, find_step, minutes_ago, overview_slices, search, step_gates
from exporter.web.views import STATUS_LABELS, gate_view
from exporter.web.whole import Tracked, runtime_of

REFRESH_SECONDS = 10
MAX_QUERY = 200  # characters of a search query
_ETAG = re.compile(r'(?:W/)?"([^"]*)"')
ASSET_TYPES = {"status.css": "text/css", "status.js": "text/javascript", "favicon.svg": "image/svg+xml"}
# No inline script or style at all: the page's JS and CSS are files served below /assets/.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")  # the search form GETs /
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
    # One decimal, as every output says it: 2 of 3 is 66.7 %, and 199 of 200 never shows as 100 %.
    env.filters["pct"] = lambda r: percent(r).replace("%", " %")
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
        self.charts = ChartCache()  # the overview's completion chart, rebuilt at most every 5 minutes

    def asset_url(self, name: str) -> str:
        """An asset's URL, versioned by its content so it can be cached for long."""
        return f"/assets/{name}?v={self.assets[name].etag}"

    # --- handlers ---

    async def index(self, request: web.Request) -> web.Response:
        """The overview of one tracker (or search results), or the list of trackers when several are loaded."""
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        runtime, filters = read
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
        keep = {"tracker": name} if request.query.get("tracker") is not None else {}
        query = request.query.get("q", "")[:MAX_QUERY]
        common: dict[str, Any] = {"filters": filters, "filter_links": filter_links(filters, keep), "keep": keep,
                                  "q": query, "fquery": _filter_query(filters, keep)}
        if query.strip():
            state = runtime.states[name]
            found = search(config, query)
            results = [gate_view(g, state.gates.get(g.id), now, clock=minutes_ago) for g in found[:SEARCH_LIMIT]]
            return await self._render(request, "index.html", "_search_main.html", t=None, results=results,
                                      more=len(found) > SEARCH_LIMIT, too_short=len(query.strip()) < MIN_QUERY,
                                      min_query=MIN_QUERY, title=f"Search: {config.title}", tracker_title=config.title,
                                      etag_key=repr((id(config), _query_key(request), results)), **common)
        slices = overview_slices(config, runtime.states[name], filters, now,
                                 all_blockers=request.query.get("blockers") == "all")
        while True:  # a slice at a time, the loop free in between (probes and scrapes keep their times)
            try:
                next(slices)
            except StopIteration as done:
                view = done.value
                break
            await asyncio.sleep(0)
        chart = await self.charts.get(config, runtime.states[name], now)
        return await self._render(request, "index.html", "_index_main.html", t=view, title=config.title,
                                  tracker_title=config.title, chart=chart,
                                  etag_key=repr((id(config), _query_key(request), view, chart.key)), **common)

    async def step(self, request: web.Request) -> web.Response:
        """One step's gates: a page of its own, or with ?partial=1 the fragment the overview opens."""
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        runtime, filters = read
        name = request.query.get("tracker")
        if name is None and len(runtime.trackers) == 1:
            name = next(iter(runtime.trackers))
        config = runtime.trackers.get(name) if name is not None else None
        found = find_step(config, request.match_info["phase"], request.match_info["step"]) if config else None
        if config is None or found is None:
            return await self._error(request, 404, "Unknown step", "No step of that id is configured.")
        phase, step = found
        gates = step_gates(step, runtime.states[config.tracker], filters, time.time())
        keep = {"tracker": config.tracker} if request.query.get("tracker") is not None else {}
        return await self._render(request, "step.html", "_step_main.html", phase=phase, step=step, gates=gates,
                                  filters=filters, keep=keep, tracker_title=config.title, title=step.title,
                                  etag_key=repr((id(config), _query_key(request), gates)))

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
        observed = None
        if gate.kind == "uptime":
            target = config.gate(gate.spec.gate)
            window = gate.spec.window if gate.spec.window is not None else config.uptime_window
            observed = (target.title if target else gate.spec.gate,
                        runtime.states[config.tracker].gates.get(gate.spec.gate), window)
        view = gate_view(gate, st, now, observed=observed)
        history = [{"outcome": r.outcome, "label": STATUS_LABELS[r.outcome], "started": r.started,
                    "ago": ago(r.started, now), "checks": checks(gate, r.measurements),
                    "value": summary(gate, r.measurements),
                    "duration": format_in(r.duration, "ms" if r.duration < 1 else "s"), "message": r.message}
                   for r in reversed(st.history)] if st else []
        keep = {"tracker": config.tracker} if len(runtime.trackers) > 1 else {}
        return await self._render(request, "gate.html", "_gate_main.html", g=view, history=history,
                                  counts=dict(st.counts) if st else {},
                                  attestations=_attestations(runtime, config.tracker, gate, now),
                                  probe=gate_probe(gate, st.result if st else None, config.base_dir, now),
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
                      etag_key: str | None = None, **ctx: Any) -> web.Response:
        ctx.setdefault("refresh_seconds", REFRESH_SECONDS if status == 200 else 0)
        ctx.update(version=__version__, asset=self.asset_url, url=url,
                   statuses=STATUSES, tiers=TIERS, status_labels=STATUS_LABELS)
        partial = request.query.get("partial") == "1"
        headers = dict(PAGE_HEADERS, Vary="Accept-Encoding")
        # Weak: the same view is the same page, gzipped or not. From the view model when there is one
        # (an unchanged view is answered without rendering), else from the text.
        if status == 200 and etag_key is not None:
            headers["ETag"] = _etag(f"{__version__}|{page}|{partial}|{etag_key}")
            # The page tells its script the ETag its first refresh (the fragment) would have: no resend.
            ctx["partial_etag"] = _etag(f"{__version__}|{page}|True|{etag_key}")
            if _matches(request.headers.get("If-None-Match", ""), headers["ETag"]):
                return web.Response(status=304, headers=headers)
        template = self.env.get_template(fragment if partial else page)
        # The context is built afresh on the loop; rendering it in a thread keeps probes and scrapes moving.
        text = await asyncio.to_thread(template.render, **ctx)
        if status == 200 and "ETag" not in headers:
            headers["ETag"] = _etag(text)
            if _matches(request.headers.get("If-None-Match", ""), headers["ETag"]):
                return web.Response(status=304, headers=headers)
        response = web.Response(status=status, text=text, content_type="text/html", charset="utf-8",
                                headers=headers)
        if accepts_gzip(request.headers.get("Accept-Encoding", "")):
            # Uptime strips repeat a lot: gzip makes the page ~10x smaller. Chosen here, not by
            # aiohttp, whose choice is a substring test that ignores `gzip;q=0`.
            response.enable_compression(web.ContentCoding.gzip)
        return response

    async def _read(self, request: web.Request) -> tuple[Tracked, Filters] | web.Response:
        """The trackers a page shows and its query's filters, or the 400 page of a bad filter."""
        runtime = runtime_of(request, self.key)  # every shard's gates with --shard.peers (web/whole.py)
        try:
            return runtime, parse_filters(request.query)
        except BadRequest as exc:
            return await self._error(request, 400, "Bad filter", str(exc))

    async def _error(self, request: web.Request, status: int, heading: str, message: str,
                     links: list[tuple[str, str]] | None = None) -> web.Response:
        return await self._render(request, "error.html", "_error_main.html", status=status, title=heading,
                                  heading=heading, message=message, links=links or [])

    def _tracker_list(self, runtime: Tracked) -> list[dict[str, Any]]:
        out = []
        for name, config in runtime.trackers.items():
            doc = progress_status(config, runtime.states[name])
            counts = {s: sum(1 for g in doc["gates"] if g["status"] == s) for s in STATUSES}
            out.append({"name": name, "title": config.title, "completion": doc["overall_completion"],
                        "counts": counts, "total": len(config.gates), "blockers": len(doc["blockers"])})
        return out


def _query_key(request: web.Request) -> str:
    """The query as part of an ETag: the page and its fragment (?partial=1) share it."""
    return repr(sorted((k, v) for k, v in request.query.items() if k != "partial"))


def _etag(text: str) -> str:
    return 'W/"' + hashlib.blake2b(text.encode(), digest_size=12).hexdigest() + '"'


def _matches(if_none_match: str, etag: str) -> bool:
    """Whether If-None-Match names this ETag (weak comparison, as RFC 9110 has it for GET)."""
    if if_none_match.strip() == "*":
        return True
    return _ETAG.search(etag).group(1) in _ETAG.findall(if_none_match)  # type: ignore[union-attr]


def _filter_query(filters: Filters, keep: dict[str, str]) -> dict[str, str]:
    """The query a step fragment needs to show what the overview shows: tracker and filters."""
    out = dict(keep)
    if filters.tiers:
        out["tier"] = ",".join(t for t in TIERS if t in filters.tiers)
    if filters.statuses:
        out["status"] = ",".join(s for s in STATUSES if s in filters.statuses)
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
    """Serve the status page at `/`, step fragments, gate pages at `/gates/{id}` and their assets at `/assets/`."""
    page = StatusPage(runtime_key)
    app.router.add_get("/", page.index)
    app.router.add_get("/phases/{phase}/steps/{step}", page.step)
    app.router.add_get("/gates/{id}", page.gate)
    app.router.add_get("/assets/{name}", page.asset)
