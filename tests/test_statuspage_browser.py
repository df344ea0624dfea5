"""The status page in a real browser: Debian's chromium driven by Playwright against a real `serve`.

One exporter serves two trackers: `demo` (passing, failing, erroring and pending gates, with 30
days of uptime history seeded into its state file) and `hostile` (a gate title and a probe message
carrying markup). Set QUALITYGATE_UPDATE_SCREENSHOT=1 to also refresh docs/status-page.png.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporter.report.badges import percent
from exporter.state.store import open_store
from tests.conftest import ROOT, Served, start_serve, wait_for, wait_listening

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOT = ROOT / "docs" / "status-page.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="Debian chromium is not installed (scripts/system-deps.sh installs it)"),
]

DEMO = """
tracker: demo
title: Comprehensive Enhancement Plan
uptime_window: 30d
defaults: {{interval: 2s, timeout: 1s, tier: important}}
phases:
  - id: core
    title: "Phase 1: Core Infrastructure"
    steps:
      - id: api
        title: API service
        team: Team A (Core Systems)
        gates:
          - id: api-health
            title: API health endpoint
            tier: critical
            http: {{url: "http://127.0.0.1:{port}/health"}}
            expect: "response_time < 500ms"
          - id: api-uptime
            title: "API uptime > 99% over 30 days"
            tier: critical
            uptime: {{gate: api-health, window: 30d}}
            expect: "> 99%"
          - id: api-port
            title: API port accepts connections
            tcp: {{address: "127.0.0.1:{port}"}}
            expect: "connect_time < 100ms"
  - id: quality
    title: "Phase 2: Testing & Quality"
    steps:
      - id: tests
        title: Testing & Validation
        team: Team B (Quality Engineering)
        gates:
          - id: unit-coverage
            title: "Unit coverage >= 85%"
            tier: critical
            coverage: {{path: {dir}/unit-coverage.json}}
            expect: ">= 85%"
          - id: e2e-coverage
            title: "E2E coverage >= 85%"
            coverage: {{path: {dir}/e2e-coverage.json}}
            expect: ">= 85%"
          - id: unit-tests
            title: Zero test failures
            junit: {{path: "{dir}/junit-*.xml"}}
          - id: perf-p95
            title: "p95 latency < 500 ms"
            tier: critical
            json_file: {{path: {dir}/perf.json, json_path: $.p95}}
            expect: "< 500ms"
      - id: release
        title: Release readiness
        gates:
          - id: deploy-marker
            title: Deployment marker present
            interval: 1s
            timeout: 500ms
            file: {{path: {dir}/deployed.flag}}
          - id: security-review
            title: Security review signed off
            manual: {{max_age: 30d}}
          - id: nightly-smoke
            title: Nightly smoke suite
            tier: enhancement
            interval: 1h
            timeout: 15m
            command: {{argv: [sleep, "900"]}}
"""

HOSTILE = """
tracker: hostile
title: "Hostile <i>input</i>"
defaults: {interval: 2s, timeout: 1s}
phases:
  - id: p
    title: "Phase <b>bold</b>"
    steps:
      - id: s
        title: Step
        gates:
          - id: evil
            title: "<script>window.__pwned=1</script><img src=x onerror=\\"window.__pwned=2\\">"
            tier: critical
            command: {shell: "echo '<script>window.__pwned=3</script><img src=y onerror=window.__pwned=4>' >&2; exit 1"}
"""


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _seed(db: Path, now: float) -> None:
    """30 days of uptime buckets, as a long-running exporter would have stored them."""
    store = open_store(str(db))
    hour, day = int(now // 3600 * 3600), int(now // 86400 * 86400)
    yesterday = day - 86400
    # (gate, evaluations per hour, {hours ago: failed}, {days ago: failed}, failing every day since N days)
    plans = [
        ("api-health", 240, {5: 40, 30: 3}, {12: 160, 20: 700}, None),
        ("api-port", 240, {}, {20: 5760}, None),
        ("unit-coverage", 12, {}, {}, None),
        ("e2e-coverage", 12, {}, {}, 9),
        ("unit-tests", 12, {7: 12}, {3: 30, 16: 50}, None),
        ("perf-p95", 12, {}, {25: 288}, None),
    ]
    for gate, per_hour, bad_hours, bad_days, failing_since in plans:
        buckets: dict[int, tuple[int, int]] = {}
        for h in range(1, 48):
            start = hour - h * 3600
            if start >= yesterday:
                bad = per_hour if failing_since is not None else bad_hours.get(h, 0)
                buckets[start] = (per_hour - bad, per_hour)
        for d in range(2, 30):
            total = 24 * per_hour
            bad = total if failing_since is not None and d <= failing_since else bad_days.get(d, 0)
            buckets[day - d * 86400] = (total - bad, total)
        store.merge_buckets("demo", gate, buckets)
    assert store.flush(30)
    store.close_sync()


def _write_reports(folder: Path) -> None:
    (folder / "unit-coverage.json").write_text(json.dumps({"totals": {"covered_lines": 882, "num_statements": 1000}}))
    (folder / "e2e-coverage.json").write_text(json.dumps({"totals": {"covered_lines": 724, "num_statements": 1000}}))
    (folder / "junit-unit.xml").write_text(
        '<testsuite name="unit" tests="120" failures="0" errors="0" skipped="0">'
        + "".join(f'<testcase name="t{i}" classname="unit"/>' for i in range(120)) + "</testsuite>")


class Stack:
    """The exporter, its folder, and the JSON API to compare the page against."""

    def __init__(self, served: Served, folder: Path):
        self.served, self.folder = served, folder

    def url(self, path: str) -> str:
        return self.served.url + path

    def api(self, tracker: str) -> dict[str, Any]:
        status, body = self.served.get(f"/api/progress/status?tracker={tracker}")
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("statuspage")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    _write_reports(folder)
    demo = folder / "demo.yml"
    demo.write_text(DEMO.format(port=server.server_address[1], dir=folder))
    hostile = folder / "hostile.yml"
    hostile.write_text(HOSTILE)
    db = folder / "state.db"
    _seed(db, time.time())
    served = start_serve([demo, hostile], folder, "--storage.path", str(db))
    try:
        stack = Stack(served, folder)
        # Every gate but the hanging one has been evaluated once.
        wait_for(lambda: sum(g["status"] == "pending" for g in stack.api("demo")["gates"]) == 1, timeout=60,
                 what="first evaluations")
        yield stack
    finally:
        served.stop()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """A browser page that records every console error, page error and failed request."""

    def __init__(self, page: Any):
        self.page = page
        self.problems: list[str] = []
        self._navigating = False
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._request_failed)
        page.on("response", self._response)
        self._not_modified: set[Any] = set()

    def goto(self, url: str) -> None:
        """Navigate and wait until the new page's own requests (favicon, first refresh) are done.

        Chromium cancels whatever the old page still has in flight when we navigate away, with
        net::ERR_ABORTED; that is our doing, not the server's, so it is kept apart from problems."""
        self._navigating = True
        try:
            self.page.goto(url, wait_until="networkidle")
        finally:
            self._navigating = False

    def _response(self, response: Any) -> None:
        if response.status == 304:
            self._not_modified.add(response.request)
        elif response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _request_failed(self, request: Any) -> None:
        if self._navigating and request.failure == "net::ERR_ABORTED":
            return  # cancelled by our own navigation (see goto)
        if request in self._not_modified and request.failure == "net::ERR_ABORTED":
            # Chromium ends a `cache: "no-store"` fetch answered 304 with ERR_ABORTED after handing the 304 to
            # the script (seen with a debug listener: RESP 304, then FAIL, same request); the script reads it.
            return
        self.problems.append(f"request failed: {request.url} {request.failure}")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console.{message.type}: {message.text}")

    def rows(self) -> dict[str, str]:
        """Gate rows of the overview: gate id -> data-status."""
        return self.page.eval_on_selector_all(
            "table.gates tr[data-gate]",
            "rows => Object.fromEntries(rows.map(r => [r.dataset.gate, r.dataset.status]))")

    def tiers_of_rows(self) -> set[str]:
        return set(self.page.eval_on_selector_all("table.gates tr[data-gate]", "rows => rows.map(r => r.dataset.tier)"))


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    t = Tab(page)
    try:
        yield t
    finally:
        context.close()


def _until(page: Any, js: str, timeout: float, what: str) -> None:
    """Poll a JS predicate from outside the page (the page's CSP forbids wait_for_function's eval)."""
    wait_for(lambda: page.evaluate(js), timeout=timeout, interval=0.25, what=what)


def _open_steps(tab: Tab) -> None:
    """Open every folded step (a passing step's gates are fetched when it is opened) and wait for its gates."""
    folded = tab.page.locator("details.step:not([open]) > summary")
    while folded.count():
        folded.first.click()
    _until(tab.page, "() => [...document.querySelectorAll('details.step')].every(d => d.open && "
                     "d.querySelector('table.gates'))", timeout=10, what="every step's gates")


def _page_state(tab: Tab) -> dict[str, Any]:
    page = tab.page
    _open_steps(tab)
    counts = page.eval_on_selector_all(
        "table.tiers tbody tr",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.tier, Object.fromEntries("
        "[...r.querySelectorAll('td[data-count]')].map(td => [td.dataset.count, Number(td.textContent)]))]))")
    labels = page.eval_on_selector_all("table.gates tr[data-gate]",
                                       "rows => rows.map(r => [r.dataset.status, r.querySelector('.badge').innerText])")
    blockers = page.eval_on_selector_all("section.blockers tr[data-gate]", "rows => rows.map(r => r.dataset.gate)")
    overall = page.locator("section.summary .progress-text").first.inner_text().split(" (")[0]
    return {"rows": tab.rows(), "counts": counts, "labels": labels, "blockers": blockers, "overall": overall}


def _api_state(doc: dict[str, Any]) -> dict[str, Any]:
    names = {"passed": "pass", "failed": "fail", "error": "error", "pending": "pending", "total": "total"}
    return {
        "rows": {g["id"]: g["status"] for g in doc["gates"]},
        "counts": {t: {names[k]: v for k, v in c.items()} for t, c in doc["quality_gates"].items()},
        "blockers": [b["gate"] for b in doc["blockers"]],
        "overall": percent(doc["overall_completion"]).replace("%", " %"),  # the one formatter: 66.7 %, not 67 %
    }


def test_tracker_list_when_several_trackers_are_loaded(stack: Stack, tab: Tab) -> None:
    tab.goto(stack.url("/"))
    names = tab.page.eval_on_selector_all("tr[data-tracker]", "rows => rows.map(r => r.dataset.tracker)")
    assert names == ["demo", "hostile"]
    tab.page.get_by_role("link", name="Comprehensive Enhancement Plan").click()
    tab.page.wait_for_url("**/?tracker=demo")
    assert tab.page.locator("h1").inner_text() == "Comprehensive Enhancement Plan"
    assert tab.problems == []


def test_page_matches_the_json_api_and_has_no_console_errors(stack: Stack, tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    deadline = time.monotonic() + 60
    while True:  # gates keep being evaluated: retry until a page load falls between two equal API answers
        before = _api_state(stack.api("demo"))
        tab.goto(stack.url("/?tracker=demo"))
        shown = _page_state(tab)
        after = _api_state(stack.api("demo"))
        core = {k: shown[k] for k in ("rows", "counts", "blockers", "overall")}
        if before == after or time.monotonic() > deadline:
            assert core == after
            break
        time.sleep(0.5)
    assert set(shown["rows"].values()) == {"pass", "fail", "error", "pending"}
    words = {"pass": "Pass", "fail": "Fail", "error": "Error", "pending": "Pending"}
    assert all(words[status] == label for status, label in shown["labels"])
    # Values in human units next to the expectation, and the seeded uptime history.
    assert "72.4 % is below 85 % (not met)" in page.locator('table.gates tr[data-gate="e2e-coverage"]').inner_text()
    assert "ms is below 100 ms" in page.locator('table.gates tr[data-gate="api-port"]').inner_text()
    low = page.locator('tr[data-gate="e2e-coverage"] .strip-day .cell.u-low')
    assert low.count() >= 9
    assert "0 of 288 passed" in (low.first.get_attribute("title") or "")
    label = page.locator('tr[data-gate="api-health"] .strip-day').get_attribute("aria-label") or ""
    assert label.startswith("Last 30 days:") and "evaluations passed" in label
    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert tab.problems == []


def test_filter_links_show_only_what_they_name(stack: Stack, tab: Tab) -> None:
    page = tab.page
    tab.goto(stack.url("/?tracker=demo"))
    filters = page.get_by_role("navigation", name="Filters")
    filters.get_by_role("link", name="critical", exact=True).click()
    page.wait_for_url("**/?tracker=demo&tier=critical")
    critical = {g["id"] for g in stack.api("demo")["gates"] if g["tier"] == "critical"}
    assert set(tab.rows()) == critical
    assert tab.tiers_of_rows() == {"critical"}
    filters.get_by_role("link", name="error", exact=True).click()
    page.wait_for_url("**/?tracker=demo&tier=critical&status=error")
    assert tab.rows() == {"perf-p95": "error"}
    assert page.locator('nav a[aria-current="true"]').all_inner_texts() == ["critical", "error"]
    tab.goto(stack.url("/?tracker=demo&tier=%3Cscript%3Ewindow.__pwned%3D1%3C/script%3E"))
    assert "use one of critical, important, enhancement" in page.locator("main").inner_text()
    assert page.evaluate("window.__pwned") is None
    # The only problem reported is the 400 itself (the browser logs it to the console too).
    assert f"HTTP 400: {page.url}" in tab.problems and all("400" in p for p in tab.problems), tab.problems


def test_refresh_swaps_in_a_state_change_and_keeps_the_filter(stack: Stack, tab: Tab) -> None:
    page = tab.page
    tab.goto(stack.url("/?tracker=demo&tier=important"))
    assert tab.rows()["deploy-marker"] == "fail"
    page.evaluate("window.__sameDocument = 'yes'")
    (stack.folder / "deployed.flag").write_text("deployed\n")
    row = "document.querySelector('table.gates tr[data-gate=\"deploy-marker\"]')"
    _until(page, f"() => {row}.dataset.status === 'pass'", timeout=60, what="the refreshed row to pass")
    assert page.evaluate("window.__sameDocument") == "yes"  # swapped in place, not reloaded
    assert page.locator("main").get_attribute("data-refreshed")
    assert tab.tiers_of_rows() == {"important"}
    assert page.locator('table.gates tr[data-gate="deploy-marker"] .badge').inner_text() == "Pass"
    assert tab.problems == []


def test_markup_in_titles_and_messages_is_shown_as_text_and_never_runs(stack: Stack, tab: Tab) -> None:
    page = tab.page
    wait_for(lambda: stack.api("hostile")["gates"][0]["status"] == "fail", timeout=60, what="hostile gate evaluated")
    tab.goto(stack.url("/?tracker=hostile"))
    title = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
    message = "exit code 1: <script>window.__pwned=3</script><img src=y onerror=window.__pwned=4>"
    assert page.locator("h1").inner_text() == "Hostile <i>input</i>"
    row = page.locator('table.gates tr[data-gate="evil"]')
    assert row.get_by_role("link").inner_text() == title
    assert row.locator(".message").inner_text() == message
    assert page.get_by_text(title, exact=True).first.is_visible()
    assert page.locator("main img, main script").count() == 0
    # Through a refresh (innerHTML swap) as well.
    _until(page, "() => Boolean(document.querySelector('main').dataset.refreshed)", timeout=30, what="a refresh")
    assert page.locator("main img, main script").count() == 0
    row.get_by_role("link").click()
    page.wait_for_url("**/gates/evil?tracker=hostile")
    assert page.locator("h1").inner_text() == title
    assert message in page.locator("main").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert tab.problems == []


def test_gate_page_shows_attestations_history_and_stored_uptime(stack: Stack, tab: Tab, tmp_path: Path) -> None:
    page = tab.page
    req = urllib.request.Request(stack.url("/api/gates/security-review/attestations?tracker=demo"),
                                 data=json.dumps({"value": 1, "by": "alice",
                                                  "note": "<b>pen test</b> report #42"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    wait_for(lambda: next(g for g in stack.api("demo")["gates"] if g["id"] == "security-review")["status"] == "pass",
             timeout=30, what="the attested gate to pass")
    tab.goto(stack.url("/gates/security-review?tracker=demo"))
    table = page.get_by_role("table", name="Attestations, newest first")
    assert "<b>pen test</b> report #42" in table.inner_text() and "alice" in table.inner_text()
    assert page.locator("section[data-status] .badge").inner_text() == "Pass"

    tab.goto(stack.url("/gates/api-health?tracker=demo"))
    history = page.get_by_role("table", name="newest first")
    assert history.locator("tbody tr").count() >= 1
    assert "ms is below 500 ms" in history.locator("tbody tr").first.inner_text()
    day = page.locator(".strip-day")
    assert day.locator(".cell").count() == 30
    assert day.locator(".cell.u-mid").count() >= 1  # the seeded bad day 20 days ago
    assert "with failures" in page.locator("main").inner_text()
    page.screenshot(path=str(tmp_path / "gate-page.png"), full_page=True)
    assert tab.problems == []


_CONTRAST_JS = """
() => {
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 4).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor);
  };
  const ratio = el => {
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(background(el));
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  const out = {};
  for (const sel of ['h1', 'main p', 'table.gates td', '.muted', '.message', 'a', '.badge.s-pass', '.badge.s-fail',
                     '.badge.s-error', '.badge.s-pending', 'caption', 'nav a[aria-current]']) {
    const els = [...document.querySelectorAll(sel)];
    if (els.length) out[sel] = Math.min(...els.map(ratio));
  }
  out.background = getComputedStyle(document.documentElement).backgroundColor;
  return out;
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa_in_both_themes(stack: Stack, tab: Tab, scheme: str, tmp_path: Path) -> None:
    page = tab.page
    page.emulate_media(color_scheme=scheme)
    tab.goto(stack.url("/?tracker=demo"))
    _open_steps(tab)  # passing steps are folded; their gates (a pending badge among them) count too
    got = page.evaluate(_CONTRAST_JS)
    background = got.pop("background")
    assert (background == "rgb(255, 255, 255)") == (scheme == "light")
    assert len(got) == 12, sorted(got)
    low = {sel: round(r, 2) for sel, r in got.items() if r < 4.5}
    assert low == {}, f"contrast below 4.5:1 in {scheme} theme: {low}"
    page.screenshot(path=str(tmp_path / f"status-page-{scheme}.png"), full_page=True)
    assert tab.problems == []


def test_docs_screenshot(stack: Stack, tab: Tab, tmp_path: Path) -> None:
    """Writes the screenshot docs/status-page.md shows (copied into docs/ with QUALITYGATE_UPDATE_SCREENSHOT=1)."""
    page = tab.page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")
    tab.goto(stack.url("/?tracker=demo"))
    page.wait_for_selector("table.gates")
    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("QUALITYGATE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert tab.problems == []


def test_page_assets_and_refresh_sit_behind_basic_auth(browser: Any, tmp_path: Path) -> None:
    import bcrypt

    config = tmp_path / "gates.yml"
    config.write_text("tracker: auth\ndefaults: {interval: 1s, timeout: 500ms}\nphases:\n  - id: p\n    steps:\n"
                      "      - id: s\n        gates:\n          - {id: host, file: {path: /etc/hostname}}\n")
    web_config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret-pw", bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(f"basic_auth_users:\n  viewer: {hashed}\n")
    with open(tmp_path / "serve.log", "w") as log_file:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file", str(config),
                                 "--web.config.file", str(web_config), "--web.listen-address", "127.0.0.1:0",
                                 "--storage.path", str(tmp_path / "state.db")],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=str(ROOT), text=True)
    served = Served(proc, wait_listening(proc, tmp_path / "serve.log"), tmp_path / "serve.log")
    try:
        wait_for(lambda: proc.poll() is not None or served.get("/-/healthy", timeout=1)[0] == 401, timeout=30,
                 what="the exporter to answer (401)")
        assert proc.poll() is None, served.log()
        for path in ("/", "/?partial=1", "/gates/host", "/assets/status.js", "/assets/status.css"):
            assert served.get(path)[0] == 401, path
        context = browser.new_context(http_credentials={"username": "viewer", "password": "s3cret-pw"})
        try:
            page = context.new_page()
            tab = Tab(page)
            tab.goto(served.url + "/")
            _until(page, "() => Boolean(document.querySelector('main').dataset.refreshed || "
                         "document.querySelector('main').dataset.unchanged)", timeout=30,
                   what="a refresh through basic auth (a new body or a 304)")
            assert tab.rows() == {}  # a passing step is folded; opening it fetches its gates, through auth too
            page.locator("details.step summary").first.click()
            page.wait_for_selector('table.gates tr[data-gate="host"]')
            assert tab.rows() == {"host": "pass"}
            assert page.locator("#refresh-status").inner_text() == ""
            assert tab.problems == []
        finally:
            context.close()
    finally:
        served.stop()


_OVERFLOW_JS = """
() => {
  const width = window.innerWidth;
  const over = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 0.5) over.push(`${el.tagName}.${el.className} right=${Math.round(r.right)}`);
  }
  const clipped = [...document.querySelectorAll('.message, td, th, summary, .progress-text')]
    .filter(el => el.clientWidth > 1 && el.scrollWidth > el.clientWidth + 1).map(el => `${el.tagName}.${el.className}`);
  return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: width, over: over.slice(0, 10),
          clipped: clipped.slice(0, 10)};
}
"""


@pytest.mark.parametrize("path", ["/?tracker=demo", "/gates/api-uptime?tracker=demo", "/gates/api-health?tracker=demo",
                                  "/?tracker=hostile", "/", "/?tracker=demo&q=coverage"])
def test_a_phone_wide_screen_scrolls_nothing_sideways(stack: Stack, browser: Any, path: str, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        tab = Tab(context.new_page())
        tab.goto(stack.url(path))
        got = tab.page.evaluate(_OVERFLOW_JS)
        assert got["scrollWidth"] <= got["innerWidth"] == 390, got
        assert got["over"] == [] and got["clipped"] == [], got
        shot = tmp_path / "phone.png"
        tab.page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
        assert tab.problems == []
    finally:
        context.close()


def test_search_box_finds_a_gate_and_an_uptime_gate_page_agrees_with_itself(stack: Stack, tab: Tab) -> None:
    page = tab.page
    tab.goto(stack.url("/?tracker=demo"))
    page.get_by_role("searchbox").fill("E2E cov")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/?tracker=demo&q=E2E+cov")
    assert list(tab.rows()) == ["e2e-coverage"]
    tab.goto(stack.url("/gates/api-uptime?tracker=demo"))
    value = page.locator("dl.details").inner_text()
    strip = page.locator(".strip-day").get_attribute("aria-label") or ""
    assert strip.startswith("Uptime of API health endpoint, last 30 days:"), strip
    shown = strip.split("(")[1].split(")")[0]  # "90.5 %"
    assert f"{shown} is " in value and "99 %" in value, (value, strip)  # the value is the strip's uptime
    assert tab.problems == []


def test_an_opened_step_stays_open_and_fresh_across_refreshes(stack: Stack, tab: Tab) -> None:
    page = tab.page
    tab.goto(stack.url("/?tracker=demo"))
    steps = page.locator("details.step")
    assert steps.count() == 3
    words = page.eval_on_selector_all("section.phase", "s => s.map(e => e.dataset.word)")
    assert "not started" not in words  # the quality phase's gates were evaluated: failing, not "not started"
    first = page.locator('details.step[data-step="tests"]')  # failing: open inline
    assert first.get_attribute("open") is not None
    first.locator("summary").click()  # fold it: the user's choice survives a refresh
    assert first.get_attribute("open") is None
    api = page.locator('details.step[data-step="api"]')  # passing: folded; opened, its gates are fetched
    if api.get_attribute("open") is None:
        api.locator("summary").click()
    page.wait_for_selector('details.step[data-step="api"] table.gates tr[data-gate="api-health"]')
    before = page.locator("main").get_attribute("data-refreshed")
    _until(page, f"() => document.querySelector('main').dataset.refreshed !== {json.dumps(before)} || "
                 "Boolean(document.querySelector('main').dataset.unchanged)", timeout=40, what="a refresh")
    assert page.locator('details.step[data-step="tests"]').get_attribute("open") is None
    assert page.locator('details.step[data-step="api"]').get_attribute("open") is not None
    assert page.locator('details.step[data-step="api"] tr[data-gate="api-health"]').count() == 1
    assert tab.problems == []


_CHART_JS = """
() => {
  const svg = document.querySelector('section.chart svg.qg-chart');
  if (!svg) return null;
  const rgb = s => s.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const bg = lum(rgb(getComputedStyle(document.documentElement).backgroundColor));
  const lines = [...svg.querySelectorAll('g.series')].map(g => {
    const path = g.querySelector('path');
    const c = lum(rgb(getComputedStyle(path || g).stroke || getComputedStyle(g).color));
    const box = path ? path.getBBox() : {width: 0, height: 0};
    return {series: g.dataset.series, points: g.querySelectorAll('circle').length, width: box.width,
            contrast: (Math.max(c, bg) + 0.05) / (Math.min(c, bg) + 0.05)};
  });
  const r = svg.getBoundingClientRect();
  return {width: r.width, height: r.height, title: svg.querySelector('title').textContent,
          desc: svg.querySelector('desc').textContent, lines};
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_completion_chart_is_drawn_from_stored_history_in_both_themes(stack: Stack, tab: Tab, scheme: str,
                                                                       tmp_path: Path) -> None:
    page = tab.page
    page.emulate_media(color_scheme=scheme)
    tab.goto(stack.url("/?tracker=demo"))
    got = page.evaluate(_CHART_JS)
    assert got is not None, "no completion chart on the overview"
    assert got["width"] > 300 and got["height"] > 100
    assert got["title"] == "Completion of Comprehensive Enhancement Plan, the last 30 days"
    assert got["desc"].startswith("Daily completion from ")
    lines = {line["series"]: line for line in got["lines"]}
    assert set(lines) == {"tracker", "core", "quality"}
    # The seeded buckets span days 29..2 ago and the last two days: a point for each day with evaluations.
    assert lines["tracker"]["points"] >= 28 and lines["tracker"]["width"] > 250
    # Graphics need 3:1 against the page (WCAG 1.4.11), in the light and the dark theme.
    low = {k: round(v["contrast"], 2) for k, v in lines.items() if v["contrast"] < 3}
    assert low == {}, f"chart lines below 3:1 in {scheme} theme: {low}"
    # The text alternative: the same numbers in a table, and now.
    page.locator("details.chart-table > summary").click()
    table = page.get_by_role("table", name="Daily completion, last 7 days, and now")
    assert table.is_visible() and "now" in table.locator("thead").inner_text()
    assert "Comprehensive Enhancement Plan" in table.locator("tbody").inner_text()
    page.locator("section.chart").screenshot(path=str(tmp_path / f"chart-{scheme}.png"))
    assert tab.problems == []  # a style attribute refused by the CSP would show up here


def test_gate_page_names_the_probe_target_and_the_evidence(stack: Stack, tab: Tab) -> None:
    page = tab.page
    tab.goto(stack.url("/gates/api-health?tracker=demo"))
    target = page.locator("dl.details code.target").inner_text()
    assert target.startswith("GET http://127.0.0.1:") and target.endswith("/health")
    evidence = page.locator("dd.evidence[data-evidence=probe]").inner_text()
    assert evidence.startswith("measured by the probe ")
    status, body = stack.served.get("/api/gates/api-health?tracker=demo")
    doc = json.loads(body)
    assert status == 200 and doc["target"] == {"url": target.removeprefix("GET ")}
    assert doc["evidence"]["kind"] == "probe" and doc["evidence"]["at"] == doc["last_evaluation"]
    tab.goto(stack.url("/gates/perf-p95?tracker=demo"))
    assert page.locator("code.target").inner_text() == "perf.json, at $.p95"  # relative to the config
    req = urllib.request.Request(stack.url("/api/gates/security-review/attestations?tracker=demo"),
                                 data=json.dumps({"value": 1, "by": "bob", "note": "<i>audit</i> #7"}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    wait_for(lambda: (next(g for g in stack.api("demo")["gates"] if g["id"] == "security-review")["evidence"]
                      or {}).get("by") == "bob", timeout=30, what="the attestation as evidence")
    tab.goto(stack.url("/gates/security-review?tracker=demo"))
    assert page.locator("code.target").inner_text() == "an attestation, valid 30d"
    text = page.locator("dd.evidence[data-evidence=attestation]").inner_text()
    assert text.startswith("attested by bob ") and ": <i>audit</i> #7; expires in 29 d" in text
    assert tab.problems == []
