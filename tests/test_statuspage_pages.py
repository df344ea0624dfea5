"""The status page over HTTP, in process: a real runtime and aiohttp server on loopback, results recorded by hand."""

from __future__ import annotations

import html.parser
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter.engine.runtime import Runtime, load_configs
from exporter.engine.scheduler import Scheduler
from exporter.model import Result
from exporter.state.store import Attestation, open_store
from exporter.web.app import make_app

CONFIG = """
tracker: page
title: "Plan <img src=x onerror=alert(1)>"
phases:
  - id: build
    title: Build & test
    steps:
      - id: ci
        title: Continuous integration
        team: "Team <b>A</b>"
        gates:
          - {id: api, title: API health, tier: critical, http: {url: "http://127.0.0.1:1/"},
             expect: ["status == 200", "response_time < 500ms"]}
          - {id: cov, title: Line coverage, tier: important, coverage: {path: cov.json}, expect: ">= 85%"}
          - {id: lint, title: "<script>window.__pwned=1</script>", tier: enhancement, command: {argv: ["true"]}}
  - id: ship
    title: Ship
    steps:
      - id: rel
        title: Release
        gates:
          - {id: report, tier: critical, json_file: {path: r.json, json_path: $.x}, expect: "> 1"}
          - {id: signoff, tier: important, manual: {max_age: 7d}}
"""

OTHER = """
tracker: other
title: Other plan
phases:
  - id: p
    steps:
      - id: s
        gates:
          - {id: api, tier: critical, file: {path: /etc/hostname}}
"""


class Page(html.parser.HTMLParser):
    """A small DOM summary: elements with attributes, and text per element id path."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.headings: list[int] = []
        self.text_parts: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self.headings.append(int(tag[1]))

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def all(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())]

    def rows(self) -> dict[str, str]:
        """Gate rows of the overview: gate id -> status."""
        return {a["data-gate"]: a["data-status"] for a in self.all("tr") if "data-tier" in a and "data-gate" in a}


@dataclass
class Site:
    client: object
    runtime: Runtime
    now: float = field(default_factory=time.time)

    async def get(self, path: str, **kw):
        return await self.client.get(path, **kw)

    async def page(self, path: str, status: int = 200) -> tuple[Page, str]:
        r = await self.client.get(path)
        body = await r.text()
        assert r.status == status, body
        return Page(body), body

    def record(self, tracker: str, gate: str, outcome: str, ago: float = 0.0, message: str = "", **m: float) -> None:
        self.runtime.states[tracker].record(Result(gate, outcome, self.now - ago, 0.01, dict(m), message))


@pytest.fixture
async def site(aiohttp_client, tmp_path: Path):
    """A runtime whose scheduler never runs: every result is recorded by the test."""
    sites = []

    async def make(*texts: str, store: bool = False) -> Site:
        paths = []
        for i, text in enumerate(texts):
            p = tmp_path / f"t{i}.yml"
            p.write_text(text)
            paths.append(str(p))
        runtime = Runtime(paths)
        if store:
            runtime.store = open_store(str(tmp_path / "state.db"))
        runtime.scheduler = Scheduler(lambda g: None, lambda g, r: None)  # type: ignore[arg-type,return-value]
        runtime.apply(load_configs(paths))
        client = await aiohttp_client(make_app(runtime))
        s = Site(client, runtime)
        sites.append(s)
        return s

    yield make
    for s in sites:
        if s.runtime.store is not None:
            await s.runtime.store.close()


def fill(s: Site) -> None:
    s.record("page", "api", "pass", ago=30, status=200, response_time=0.212, value=0.212)
    s.record("page", "cov", "fail", ago=20, value=0.724, message="value 0.724 does not satisfy '>= 85%'")
    s.record("page", "lint", "fail", ago=10, exit_code=1, value=1, message="exit code 1: <img src=x onerror=alert(2)>")
    s.record("page", "report", "error", ago=5, message="r.json: no such file")


async def test_overview_shows_blockers_phases_steps_and_gates(site):
    s = await site(CONFIG)
    fill(s)
    page, body = await s.page("/")
    assert page.rows() == {"api": "pass", "cov": "fail", "lint": "fail", "report": "error", "signoff": "pending"}
    # Blockers: failing or erroring critical and important gates, at the top (before the first phase).
    blockers = [a["data-gate"] for a in page.all("tr") if "data-gate" in a and "data-tier" not in a]
    assert blockers == ["report", "cov"], "critical first"
    assert body.index('id="blockers-h"') < body.index('id="phase-build"')
    text = page.text
    assert "20 % (1 of 5 gates pass)" in text
    assert "33.3 % (1 of 3 gates pass)" in text  # one decimal, as every output says it: never "33 %"
    assert "Build &amp; test" not in text and "Build & test" in text
    assert "status 200 is 200" in text and "response_time 212 ms is below 500 ms" in text
    assert "72.4 % is below 85 % (not met)" in text
    assert "expects > 1" in text
    assert "exit code 1 (expects exit code 0)" in text
    for word in ("Pass", "Fail", "Error", "Pending"):  # status as a word, never colour alone
        assert page.all("span", **{"class": f"badge s-{word.lower()}"}), word
    assert [p["value"] for p in page.all("progress")] == ["20.0", "33.3", "0.0"]
    counts = {a["data-tier"]: a for a in page.all("tr") if "data-tier" in a and "data-gate" not in a}
    assert set(counts) == {"critical", "important", "enhancement"}
    assert "Last 24 hours: 1 of 1 evaluations passed (100.0 %); no hour with failures." in body


async def test_every_config_and_probe_string_is_escaped(site):
    s = await site(CONFIG)
    fill(s)
    for path in ("/", "/gates/lint", "/?partial=1", "/gates/lint?partial=1"):
        _, body = await s.page(path)
        assert "<script>window" not in body and "<img src=x" not in body and "<b>A</b>" not in body
    _, body = await s.page("/")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in body
    assert "exit code 1: &lt;img src=x onerror=alert(2)&gt;" in body
    assert "Plan &lt;img src=x onerror=alert(1)&gt;" in body
    assert "Team &lt;b&gt;A&lt;/b&gt;" in body


async def test_pages_forbid_inline_script_and_are_not_cached_stale(site):
    s = await site(CONFIG)
    r = await s.get("/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    r = await s.get("/", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("Content-Encoding") == "gzip"
    _, body = await s.page("/")
    assert " style=" not in body and "<script>" not in body  # CSP allows neither inline styles nor scripts


@pytest.mark.parametrize("query, shown", [
    ("tier=critical", {"api": "pass", "report": "error"}),
    ("status=fail", {"cov": "fail", "lint": "fail"}),
    ("status=fail,error", {"cov": "fail", "lint": "fail", "report": "error"}),
    ("tier=critical&status=error", {"report": "error"}),
    ("tier=important&status=pending", {"signoff": "pending"}),
    ("tier=enhancement&status=pass", {}),
])
async def test_filters_show_only_matching_gates(site, query, shown):
    s = await site(CONFIG)
    fill(s)
    page, _ = await s.page("/?" + query)
    assert page.rows() == shown
    blockers = {a["data-gate"] for a in page.all("tr") if "data-gate" in a and "data-tier" not in a}
    assert blockers == {g for g, st in shown.items() if st in ("fail", "error") and g in ("cov", "report")}
    assert f"showing {len(shown)} of 5 gates" in page.text
    if not shown:
        assert "No gate matches this filter." in page.text
    # The overall numbers stay those of the whole tracker.
    assert "20 % (1 of 5 gates pass)" in page.text


async def test_filter_links_keep_the_other_filter_and_mark_the_current_one(site):
    s = await site(CONFIG)
    page, _ = await s.page("/?tier=critical")
    current = [a["href"] for a in page.all("a") if a.get("aria-current") == "true"]
    assert current == ["/?tier=critical", "/?tier=critical"]  # tier=critical, and status=all keeping the tier
    hrefs = [a["href"] for a in page.all("a")]
    assert "/?tier=critical&status=fail" in hrefs
    assert "/" in hrefs


@pytest.mark.parametrize("query", ["tier=%3Cscript%3Ealert(1)%3C/script%3E", "status=broken", "tier=critical,nope"])
async def test_unknown_filter_words_are_refused_not_reflected(site, query):
    s = await site(CONFIG)
    page, body = await s.page("/?" + query, status=400)
    assert "use one of" in page.text
    assert "alert(1)" not in body and "broken" not in body and "nope" not in body
    assert page.all("main", **{"data-refresh-seconds": "0"})  # an error page does not auto-refresh


async def test_partial_is_the_main_element_content_only(site):
    s = await site(CONFIG)
    fill(s)
    page, body = await s.page("/?status=fail&partial=1")
    assert "<html" not in body and "<main" not in body and "<header" not in body
    assert page.rows() == {"cov": "fail", "lint": "fail"}
    assert page.headings[0] == 2


async def test_landmarks_headings_and_table_semantics(site):
    s = await site(CONFIG)
    fill(s)
    for path in ("/", "/gates/api", "/gates/signoff", "/?tier=nope"):
        r = await s.get(path)
        page = Page(await r.text())
        assert page.all("html", lang="en"), path
        for landmark in ("header", "main", "nav", "footer"):
            assert len(page.all(landmark)) >= (0 if landmark == "nav" and r.status != 200 else 1), (path, landmark)
        assert page.headings.count(1) == 1, path
        assert page.headings[0] == 1
        # No heading level is skipped on the way down.
        for prev, cur in itertools.pairwise(page.headings):
            assert cur <= prev + 1, (path, page.headings)
        tables = len(page.all("table"))
        assert len(page.all("caption")) == tables, path
        assert all(a.get("scope") in ("col", "row") for a in page.all("th")), path
        assert all(a.get("aria-label") for a in page.all("div", role="img")), path
        assert all(a.get("title") for a in page.all("span") if a.get("class", "").startswith("cell ")), path


async def test_gate_page_shows_history_newest_first(site):
    s = await site(CONFIG)
    s.record("page", "cov", "pass", ago=300, value=0.9)
    s.record("page", "cov", "fail", ago=200, value=0.8, message="value 0.8 does not satisfy '>= 85%'")
    s.record("page", "cov", "error", ago=100, message="cov.json: no such file")
    page, _ = await s.page("/gates/cov")
    statuses = [a["data-status"] for a in page.all("tr") if "data-status" in a]
    assert statuses == ["error", "fail", "pass"]
    text = page.text
    assert "Line coverage" in text and "The last 3 evaluations, newest first" in text
    assert "80 % is below 85 %" in text and "90 % is at least 85 %" in text
    assert "1 pass, 1 fail, 1 error" in text
    assert "every 1m, timeout 10s" in text and "coverage" in text
    assert "Last 24 hours: 1 of 3 evaluations passed (33.3 %)" in text
    assert page.all("section", **{"data-status": "error"})
    crumbs = [a["href"] for a in page.all("a")]
    assert "/" in crumbs and "/gates/cov" in crumbs


async def test_gate_page_of_a_pending_gate_and_unknown_gates(site):
    s = await site(CONFIG)
    page, _ = await s.page("/gates/report")
    assert "No evaluation yet: the gate is pending." in page.text
    page, body = await s.page("/gates/%3Cscript%3E", status=404)
    assert "<script>" not in body.replace('<script src="/assets/', "")
    assert "No gate with that id is configured." in page.text
    await s.page("/gates/api?tracker=nope", status=404)


async def test_gate_page_lists_attestations_escaped(site):
    s = await site(CONFIG, store=True)
    s.runtime.store.attest("page", "signoff", Attestation(1.0, s.now - 3600, "<b>alice</b>", "ok <script>x()</script>"))
    s.runtime.store.attest("page", "signoff", Attestation(0.0, s.now - 60, "bob", "revoked"))
    page, body = await s.page("/gates/signoff")
    assert "<b>alice</b>" not in body and "&lt;b&gt;alice&lt;/b&gt;" in body
    assert "ok &lt;script&gt;x()&lt;/script&gt;" in body
    text = page.text
    assert text.index("revoked") < text.index("alice")  # newest first
    assert "Attestations, newest first" in text


async def test_gate_page_of_a_manual_gate_without_storage_says_why_no_attestations(site):
    s = await site(CONFIG)
    page, _ = await s.page("/gates/signoff")
    assert "No state file is in use" in page.text


async def test_several_trackers_list_then_select(site):
    s = await site(CONFIG, OTHER)
    fill(s)
    page, _ = await s.page("/")
    assert [a["data-tracker"] for a in page.all("tr") if "data-tracker" in a] == ["page", "other"]
    assert "/?tracker=other" in [a["href"] for a in page.all("a")]
    page, _ = await s.page("/?tracker=other&tier=critical")
    assert page.rows() == {"api": "pending"}
    assert "/gates/api?tracker=other" in [a["href"] for a in page.all("a")]
    assert "/?tracker=other&tier=critical&status=fail" in [a["href"] for a in page.all("a")]
    await s.page("/?tracker=%3Cb%3E", status=404)
    # The same gate id in two trackers: the gate page asks which one.
    page, _ = await s.page("/gates/api", status=400)
    assert {"/gates/api?tracker=page", "/gates/api?tracker=other"} <= {a["href"] for a in page.all("a")}
    page, _ = await s.page("/gates/api?tracker=page")
    assert "API health" in page.text and "status 200 is 200" in page.text


async def test_assets_are_served_with_validators_and_long_cache(site):
    s = await site(CONFIG)
    page, _ = await s.page("/")
    urls = [a["href"] for a in page.all("link")] + [a["src"] for a in page.all("script")]
    assert len(urls) == 3 and all(u.startswith("/assets/") and "?v=" in u for u in urls)
    types = {"status.css": "text/css", "status.js": "text/javascript", "favicon.svg": "image/svg+xml"}
    for url in urls:
        r = await s.get(url)
        assert r.status == 200
        name = url.split("/")[-1].split("?")[0]
        assert r.headers["Content-Type"].split(";")[0] == types[name]
        assert r.headers["Cache-Control"] == "public, max-age=86400"
        etag = r.headers["ETag"]
        assert url.endswith(etag.strip('"'))
        r = await s.get(url, headers={"If-None-Match": etag})
        assert r.status == 304
    for bad in ("/assets/nope.css", "/assets/..%2Fstatuspage.py", "/assets/%2e%2e%2fweb.py", "/assets/"):
        assert (await s.get(bad)).status == 404, bad
