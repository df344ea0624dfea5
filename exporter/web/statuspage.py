"""The human status page: `GET /`, `GET /gates/{id}` and their assets, rendered server-side with Jinja2.

Every string from a config or a probe reaches HTML only through Jinja2 with autoescaping on, and
the pages carry a Content-Security-Policy that allows no inline script, so an escaping slip
still could not run code. The page's one script (`/assets/status.js`) re-fetches the same URL
with `?partial=1` every 10 s and swaps the content of `<main>`, so filters survive a refresh.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hashlib
import importlib.resources
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlencode

import jinja2
import markupsafe
from aiohttp import web

from exporter import __version__
from exporter.config.durations import format_duration
from exporter.config.expect import UNITS, Condition, format_number
from exporter.config.model import TIERS, Config, Gate
from exporter.model import ERROR, FAIL, PASS, PENDING, STATUSES
from exporter.report.badges import percent
from exporter.report.status import progress_status, rfc3339
from exporter.state.memory import GateState, State

STATUS_LABELS = {PASS: "Pass", FAIL: "Fail", ERROR: "Error", PENDING: "Pending"}
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
TIME_MEASUREMENTS = frozenset({"response_time", "duration", "connect_time", "age"})
COUNT_MEASUREMENTS = frozenset({"status", "exit_code", "tests", "failures", "errors", "skipped"})
DEFAULT_EXPECTATION = {
    "http": "a valid status code",
    "tcp": "a connection",
    "command": "exit code 0",
    "junit": "no failures or errors",
    "file": "the file to exist",
    "manual": "a fresh attestation",
}
_UNIT_NAMES = {"%": "%", "ms": "ms", "s": "s", "m": "min", "h": "h", "d": "d"}


class BadRequest(ValueError):
    """A query parameter outside its known words; the message never repeats the value."""


# --- filters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """Which gates to show: by tier and by status (empty means all)."""

    tiers: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    @property
    def active(self) -> bool:
        """Whether any filter is set."""
        return bool(self.tiers or self.statuses)

    def matches(self, tier: str, status: str) -> bool:
        """Whether a gate with this tier and status is shown."""
        return (not self.tiers or tier in self.tiers) and (not self.statuses or status in self.statuses)

    def describe(self) -> str:
        """`tier critical, status fail or error`, for headings."""
        parts = []
        if self.tiers:
            parts.append("tier " + " or ".join(t for t in TIERS if t in self.tiers))
        if self.statuses:
            parts.append("status " + " or ".join(s for s in STATUSES if s in self.statuses))
        return ", ".join(parts)


def parse_filters(query: Any) -> Filters:
    """Read `tier` and `status` (repeated or comma-separated); BadRequest on an unknown word."""
    return Filters(frozenset(_words(query, "tier", TIERS)), frozenset(_words(query, "status", STATUSES)))


def _words(query: Any, name: str, allowed: tuple[str, ...]) -> list[str]:
    out = []
    for raw in query.getall(name, []):
        for word in raw.split(","):
            word = word.strip()
            if not word:
                continue
            if word not in allowed:
                raise BadRequest(f"unknown {name}: use one of {', '.join(allowed)}")
            out.append(word)
    return out


# --- values in human units -----------------------------------------------------------------------


def measurement_kind(gate: Gate, measurement: str) -> str:
    """time | ratio | bytes | count | number: how a measurement of this gate is best shown."""
    if measurement == "value":
        if gate.kind in ("coverage", "junit", "uptime"):
            return "ratio"
        if gate.kind in ("tcp", "file"):
            return "time"
        if gate.kind == "http":
            spec = gate.spec
            return "number" if getattr(spec, "json_path", None) or getattr(spec, "body_regex", None) else "time"
        if gate.kind == "command":
            return "number" if getattr(gate.spec, "value_regex", None) else "count"
        return "number"
    if measurement in TIME_MEASUREMENTS:
        return "time"
    if measurement == "size":
        return "bytes"
    if measurement in COUNT_MEASUREMENTS:
        return "count"
    return "number"


def written_unit(cond: Condition) -> str | None:
    """The unit as written at the end of the condition (`%`, `ms`, `s`, `m`, `h`, `d`), if any."""
    return cond.unit or None


def display_unit(kind: str, written: str | None, scale: float | None) -> str | None:
    """The unit to show a value in: as written in expect, else chosen from the measurement."""
    if written:
        return written
    if kind == "ratio":
        return "%"
    if kind == "time":
        s = abs(scale) if scale is not None else 0.0
        for limit, unit in ((1, "ms"), (120, "s"), (7200, "m"), (172800, "h")):
            if s < limit:
                return unit
        return "d"
    if kind == "bytes":
        return "bytes"
    return None


def format_in(value: float, unit: str | None, exact: bool = False) -> str:
    """A number in a unit: `85.0 %`, `212 ms`, `1.5 MiB`; `exact` renders thresholds as written."""
    if not math.isfinite(value):
        return str(value)
    if unit == "bytes":
        return _bytes(value)
    if unit in UNITS:
        scaled = value / UNITS[unit]
        if exact:
            text = format_number(round(scaled, 9))
        elif unit == "%":
            text = f"{scaled:.1f}"
        else:
            text = _fixed(scaled)
        return f"{text} {_UNIT_NAMES[unit]}"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return format_number(value) if exact else _fixed(value)


def _fixed(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v:.4g}"
    digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{v:.{digits}f}"


def _bytes(v: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{int(v)} bytes" if unit == "bytes" else f"{_fixed(v)} {unit}"
        v /= 1024
    raise AssertionError


@dataclass(frozen=True)
class Check:
    """One expect condition against what was measured: `212 ms < 500 ms`."""

    measurement: str
    shown: str | None  # the measured value in the condition's unit; None when not measured
    op: str
    target: str
    met: bool | None  # None when nothing was measured

    @property
    def text(self) -> str:
        """The whole check as one line: `status 200 == 200`, `85.0 % >= 85 %`, or `expects > 1`."""
        name = "" if self.measurement == "value" else self.measurement + " "
        if self.shown is None:
            return f"expects {name}{self.op} {self.target}"
        return f"{name}{self.shown} {self.op} {self.target}"


def checks(gate: Gate, measurements: Mapping[str, float]) -> list[Check]:
    """Each expect condition of a gate with the measured value in human units."""
    out = []
    for cond in gate.expect:
        kind = measurement_kind(gate, cond.measurement)
        unit = display_unit(kind, written_unit(cond), cond.threshold)
        got = measurements.get(cond.measurement)
        value_unit = unit
        if got is not None and kind == "time" and unit in UNITS and 0 < abs(got) / UNITS[unit] < 1:
            value_unit = display_unit(kind, None, got)  # `12.0 h < 1 d` reads better than `0.500 d`
        out.append(Check(cond.measurement, format_in(got, value_unit) if got is not None else None, cond.op,
                         format_in(cond.threshold, unit, exact=True), cond.holds(got) if got is not None else None))
    return out


def measured(gate: Gate, name: str, measurements: Mapping[str, float]) -> str | None:
    """One measurement in human units, or None when it was not made."""
    got = measurements.get(name)
    if got is None:
        return None
    return format_in(got, display_unit(measurement_kind(gate, name), None, got))


def summary(gate: Gate, measurements: Mapping[str, float]) -> str:
    """What was measured, in words, for gates judged by their kind's default (no expect)."""
    m = measurements
    if not m:
        return "—"
    if gate.kind == "http" and "status" in m:
        text = f"HTTP {int(m['status'])}"
        rt = measured(gate, "response_time", m)
        return f"{text} in {rt}" if rt else text
    if gate.kind == "command" and "exit_code" in m:
        text = f"exit code {int(m['exit_code'])}"
        return f"{text}, value {measured(gate, 'value', m)}" if getattr(gate.spec, "value_regex", None) else text
    if gate.kind == "file" and "age" in m:
        return f"{measured(gate, 'size', m) or '?'}, modified {measured(gate, 'age', m)} ago"
    if gate.kind == "tcp":
        return f"connected in {measured(gate, 'connect_time', m) or measured(gate, 'value', m)}"
    if gate.kind == "junit" and "tests" in m:
        return (f"{int(m['tests'])} tests, {int(m.get('failures', 0))} failures, "
                f"{int(m.get('errors', 0))} errors")
    return measured(gate, "value", m) or "—"


def primary_value(gate: Gate, value: float | None) -> str:
    """The primary measurement alone in human units, or "—"."""
    if value is None:
        return "—"
    kind = measurement_kind(gate, "value")
    return format_in(value, display_unit(kind, None, value))


# --- time -----------------------------------------------------------------------------------------


def ago(ts: float | None, now: float) -> str:
    """`just now`, `42 s ago`, `5 min ago`, `3 h ago`, `2 d ago`, or `never`."""
    if ts is None:
        return "never"
    age = max(0.0, now - ts)
    if age < 5:
        return "just now"
    for limit, size, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if age < limit:
            return f"{int(age // size)} {unit} ago"
    return f"{int(age // 86400)} d ago"


def utc_text(ts: float | None) -> str:
    """`2024-05-01 14:03:12 UTC` (or empty)."""
    if ts is None:
        return ""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- uptime strips --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _span(start: int, seconds: int) -> str:
    """A cell's time span in words; the same few spans recur for every gate, hence the cache."""
    begin = datetime.datetime.fromtimestamp(start, datetime.UTC)
    if seconds >= 86400:
        return begin.strftime("%Y-%m-%d UTC")
    end = begin + datetime.timedelta(seconds=seconds)
    return f"{begin:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"


class Cell(NamedTuple):
    """One cell of an uptime strip: the evaluations that started in its time span."""

    start: int
    seconds: int
    passed: int
    total: int

    @property
    def level(self) -> str:
        """none | full | high | mid | low: the CSS class, by pass ratio."""
        if not self.total:
            return "none"
        r = self.passed / self.total
        return "full" if r == 1 else "high" if r >= 0.95 else "mid" if r >= 0.5 else "low"

    @property
    def title(self) -> str:
        """The tooltip: span and counts."""
        if not self.total:
            return f"{_span(self.start, self.seconds)}: no evaluations"
        return (f"{_span(self.start, self.seconds)}: {self.passed:,} of {self.total:,} passed "
                f"({100 * self.passed / self.total:.1f} %)")


@dataclass(frozen=True)
class Strip:
    """An uptime strip: equal cells ending with the current hour or day."""

    label: str
    unit: str  # "hour" | "day"
    cells: tuple[Cell, ...]
    passed: int
    total: int

    @property
    def ratio_text(self) -> str:
        """`99.3 %`, or `no data`."""
        return f"{100 * self.passed / self.total:.1f} %" if self.total else "no data"

    @property
    def summary(self) -> str:
        """The strip in words, for screen readers and the text next to it."""
        if not self.total:
            return f"{self.label}: no evaluations."
        bad = sum(1 for c in self.cells if c.total and c.passed < c.total)
        cells = f"{bad} {self.unit}{'' if bad == 1 else 's'} with failures" if bad else f"no {self.unit} with failures"
        return f"{self.label}: {self.passed:,} of {self.total:,} evaluations passed ({self.ratio_text}); {cells}."

    @property
    def cells_html(self) -> markupsafe.Markup:
        """The cells as HTML (built here, not in a template loop: a page of 1,000 gates has 54,000)."""
        return markupsafe.Markup("".join(
            f'<span class="cell u-{c.level}" title="{markupsafe.escape(c.title)}"></span>' for c in self.cells))


def uptime_strip(buckets: Mapping[int, Any], now: float, cell_seconds: int, count: int, label: str) -> Strip:
    """Sum the stored uptime buckets into `count` cells of `cell_seconds`, the last holding `now`."""
    first = (int(now) // cell_seconds - count + 1) * cell_seconds
    sums = [[0, 0] for _ in range(count)]
    for start, (passed, total) in buckets.items():
        i = (int(start) - first) // cell_seconds
        if 0 <= i < count:
            sums[i][0] += passed
            sums[i][1] += total
    cells = tuple(Cell(first + i * cell_seconds, cell_seconds, p, t) for i, (p, t) in enumerate(sums))
    return Strip(label, "hour" if cell_seconds == 3600 else "day", cells,
                 sum(p for p, _ in sums), sum(t for _, t in sums))


def strips(st: GateState | None, now: float) -> tuple[Strip, Strip]:
    """The 24-hour (hourly cells) and 30-day (daily cells) strips of a gate."""
    buckets = st.buckets if st else {}
    return (uptime_strip(buckets, now, 3600, 24, "Last 24 hours"),
            uptime_strip(buckets, now, 86400, 30, "Last 30 days"))


# --- view models ----------------------------------------------------------------------------------


def gate_view(gate: Gate, st: GateState | None, now: float) -> dict[str, Any]:
    """Everything the templates show of one gate."""
    r = st.result if st else None
    status = st.status if st else PENDING
    measurements = dict(r.measurements) if r else {}
    day, month = strips(st, now)
    return {
        "id": gate.id,
        "title": gate.title,
        "tier": gate.tier,
        "kind": gate.kind,
        "phase": gate.phase,
        "step": gate.step,
        "team": gate.team,
        "description": gate.description,
        "status": status,
        "status_label": STATUS_LABELS[status],
        "checks": checks(gate, measurements),
        "value": summary(gate, measurements),
        "default_expectation": DEFAULT_EXPECTATION.get(gate.kind, ""),
        "message": r.message if r else "",
        "last_evaluation": r.started if r else None,
        "last_evaluation_ago": ago(r.started, now) if r else "never",
        "duration": format_in(r.duration, "ms" if r.duration < 1 else "s") if r else "—",
        "last_pass": st.last_pass if st else None,
        "last_pass_ago": ago(st.last_pass, now) if st else "never",
        "since": st.since if st else None,
        "since_ago": ago(st.since, now) if st and st.since else "",
        "strips": (day, month),
        "interval": gate.interval,
        "timeout": gate.timeout,
    }


def tracker_view(config: Config, state: State, filters: Filters, now: float) -> dict[str, Any]:
    """The overview page of one tracker, with the filters applied to gates and blockers."""
    doc = progress_status(config, state, now)
    status_of = {g["id"]: g["status"] for g in doc["gates"]}
    steps = {(s["phase"], s["id"]): s for s in doc["step_completion"]}
    phases = []
    shown = 0
    for phase, pdoc in zip(config.phases, doc["phase_status"], strict=True):
        step_views = []
        for step in phase.steps:
            gates = [gate_view(g, state.gates.get(g.id), now) for g in step.gates
                     if filters.matches(g.tier, status_of[g.id])]
            if filters.active and not gates:
                continue
            shown += len(gates)
            sdoc = steps[(phase.id, step.id)]
            step_views.append({"id": step.id, "title": step.title, "team": step.team, "gates": gates,
                               "completion": sdoc["completion"], "status": sdoc["status"],
                               "passed": sum(status_of[g.id] == PASS for g in step.gates),
                               "total": len(step.gates)})
        if filters.active and not step_views:
            continue
        phases.append({"id": phase.id, "title": phase.title, "steps": step_views,
                       "completion": pdoc["completion"], "status": pdoc["status"],
                       "passed": sum(status_of[g.id] == PASS for g in phase.gates), "total": len(phase.gates)})
    blockers = []
    for b in doc["blockers"]:
        if filters.matches(b["tier"], b["status"]):
            st = state.gates.get(b["gate"])
            blockers.append({**b, "status_label": STATUS_LABELS[b["status"]],
                             "since_ts": st.since if st else None,
                             "since_ago": ago(st.since, now) if st and st.since else ""})
    totals = {s: sum(1 for v in status_of.values() if v == s) for s in STATUSES}
    return {
        "tracker": config.tracker,
        "title": config.title,
        "overall_completion": doc["overall_completion"],
        "passed": totals[PASS],
        "total": len(config.gates),
        "totals": totals,
        "quality_gates": doc["quality_gates"],
        "phases": phases,
        "blockers": blockers,
        "shown": shown,
        "generated_at": doc["generated_at"],
    }


# --- HTTP -----------------------------------------------------------------------------------------


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

    def __init__(self, runtime_key: web.AppKey[Any]):
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
                                  filter_links=_filter_links(filters, keep), keep=keep, title=config.title)

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
                                         links=[(_url(f"/gates/{gate_id}", {"tracker": n}), n) for n in owners])
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
        ctx.update(version=__version__, asset=self.asset_url, url=_url,
                   statuses=STATUSES, tiers=TIERS, status_labels=STATUS_LABELS)
        partial = request.query.get("partial") == "1"
        template = self.env.get_template(fragment if partial else page)
        # The context is built afresh on the loop; rendering it in a thread keeps probes and scrapes moving.
        text = await asyncio.to_thread(template.render, **ctx)
        response = web.Response(status=status, text=text, content_type="text/html", charset="utf-8",
                                headers=PAGE_HEADERS)
        response.enable_compression()  # uptime strips repeat a lot: gzip makes the page ~10x smaller
        return response

    async def _error(self, request: web.Request, status: int, heading: str, message: str,
                     links: list[tuple[str, str]] | None = None) -> web.Response:
        return await self._render(request, "error.html", "_error_main.html", status=status, title=heading,
                                  heading=heading, message=message, links=links or [])

    def _tracker_list(self, runtime: Any) -> list[dict[str, Any]]:
        out = []
        for name, config in runtime.trackers.items():
            doc = progress_status(config, runtime.states[name])
            counts = {s: sum(1 for g in doc["gates"] if g["status"] == s) for s in STATUSES}
            out.append({"name": name, "title": config.title, "completion": doc["overall_completion"],
                        "counts": counts, "total": len(config.gates), "blockers": len(doc["blockers"])})
        return out


def _url(path: str, params: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> str:
    """A same-origin URL with a properly encoded query string."""
    query = urlencode(list(params.items()) if isinstance(params, Mapping) else list(params))
    return f"{path}?{query}" if query else path


def _filter_links(filters: Filters, keep: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """For each filter group, links to `all` and each word; the other group's choice is kept."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, words, chosen, other_name, other in (("tier", TIERS, filters.tiers, "status", filters.statuses),
                                                    ("status", STATUSES, filters.statuses, "tier", filters.tiers)):
        base = list(keep.items()) + [(other_name, w) for w in (STATUSES if other_name == "status" else TIERS)
                                     if w in other]
        links = [{"label": "all", "href": _url("/", base), "current": not chosen}]
        for w in words:
            links.append({"label": w, "href": _url("/", [*base, (name, w)]), "current": chosen == {w}})
        groups[name] = links
    return groups


def _attestations(runtime: Any, tracker: str, gate: Gate, now: float) -> list[dict[str, Any]] | None:
    """A manual gate's stored attestations, newest first; None when there is no store to ask."""
    store = runtime.store
    read = getattr(store, "attestations", None) if store is not None else None
    if read is None:
        return None
    out = []
    for att in read(tracker, gate.id):
        out.append({"at": att.at, "ago": ago(att.at, now), "by": getattr(att, "by", ""),
                    "note": getattr(att, "note", ""), "value": primary_value(gate, att.value)})
    return out


def add_routes(app: web.Application, runtime_key: web.AppKey[Any]) -> None:
    """Serve the status page at `/`, gate pages at `/gates/{id}` and their assets at `/assets/`."""
    page = StatusPage(runtime_key)
    app.router.add_get("/", page.index)
    app.router.add_get("/gates/{id}", page.gate)
    app.router.add_get("/assets/{name}", page.asset)
