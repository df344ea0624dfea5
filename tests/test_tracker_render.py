"""`qualitygate render`: every box, status and percentage comes from an evaluation."""

from __future__ import annotations

import asyncio
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from exporter.cli.check import run_check
from exporter.config.model import parse_config
from exporter.report.status import progress_status
from exporter.state.memory import State
from exporter.tracker.importer import import_tracker, import_tracker_file
from exporter.tracker.render import render_markdown
from tracker_support import TRACKERS, shape, small_status, status_from_config


def gate_lines(markdown: str) -> dict[str, str]:
    """Gate title -> its rendered checkbox line."""
    out = {}
    for line in markdown.splitlines():
        m = re.match(r"^- \[[ x]\] (.*?)(?::| —)", line)
        if m:
            out[m[1]] = line
    return out


def test_render_hand_made_status():
    md = render_markdown(small_status(), source="http://127.0.0.1:9916")
    lines = gate_lines(md)
    # Values and thresholds in the one formatter's words (exporter.config.units), as check and the page say them.
    assert lines["Health endpoint"].startswith("- [x] Health endpoint: response_time < 500ms — "
                                               "✅ pass (response_time 12 ms is below 500 ms)")
    assert lines["Line coverage"].startswith("- [ ] Line coverage: >= 85% — ❌ FAIL at 2025-11-12T20:19:58Z: "
                                             "coverage 71 % is below 85 %")
    assert "not verified: the probe could not measure: command not found" in lines["Smoke tests &lt;script>"]
    assert "not verified: no attestation yet (qualitygate attest docs-reviewed --value V)" in lines["Docs reviewed"]
    assert lines["SLA"].endswith("⏳ not verified: not evaluated yet")
    assert md.count("- [x]") == 1  # one gate passed, one box ticked
    assert "### Step 1: API - IN PROGRESS" in md
    assert "### Step 2: Ops - NOT STARTED" in md
    assert "- COMPLETED" not in md
    assert "**Team**: Team A" in md
    assert "### PHASE 1: Core - IN PROGRESS" in md and "- **Completion**: 33.3% (1 of 3 gates pass)" in md
    assert "Last updated: 2025-11-12T20:20:00Z" in md
    assert "from http://127.0.0.1:9916" in md
    assert "- **Overall completion**: 20% (1 of 5 gates pass)" in md
    assert "- **Not verified**: 3 (1 awaiting an attestation, 1 probe errors, 1 not evaluated yet)" in md
    blockers = md.split("## Blockers")[1]
    assert blockers.index("**coverage**") < blockers.index("**smoke**")  # failures before errors
    assert "<script>" not in md
    assert "| Critical Gates (Must Pass) | 1 | 0 | 1 | 0 | 2 |" in md


def test_title_override_and_no_blockers():
    status = small_status()
    status["blockers"] = []
    md = render_markdown(status, title="Our plan")
    assert md.startswith("# Our plan\n")
    assert "None: no critical or important gate is failing or erroring." in md


def test_completed_only_when_every_gate_passes():
    status = small_status()
    for g in status["gates"]:
        if g["step"] == "api":
            g["status"] = "pass"
    md = render_markdown(status)
    assert "### Step 1: API - COMPLETED" in md
    assert "### PHASE 1: Core - IN PROGRESS" in md  # ops still has an erroring gate
    # A step with no gates is never COMPLETED: nothing was verified.
    status["step_completion"].append({"id": "empty", "phase": "docs", "title": "Empty", "team": "",
                                      "completion": 0.0, "status": "not_started"})
    md = render_markdown(status)
    assert "### Step 4: Empty - NO GATES" in md
    assert "_No gates: nothing here can be verified._" in md


def roundtrip(text: str, name: str, with_config: bool) -> tuple[list, list]:
    first = import_tracker(text, name)
    config = parse_config(first.yaml_text, "first.yml")
    md = render_markdown(status_from_config(config), config=config if with_config else None)
    second = parse_config(import_tracker(md, "rendered.md").yaml_text, "second.yml")
    assert (second.tracker, second.title) == (config.tracker, config.title)
    return shape(config), shape(second)


@pytest.mark.parametrize("with_config", [True, False])
def test_round_trip_seed(with_config):
    before, after = roundtrip((TRACKERS / "seed.md").read_text(encoding="utf-8"), "seed.md", with_config)
    assert after == before


@pytest.mark.parametrize("name", ["nested.md", "unicode.md", "flat.md", "no_gates.md"])
def test_round_trip_variants(name):
    before, after = roundtrip((TRACKERS / name).read_text(encoding="utf-8"), name, True)
    assert after == before


def test_rendered_tracker_reimports_without_surprises():
    config = parse_config(import_tracker_file(str(TRACKERS / "seed.md")).yaml_text, "seed.yml")
    md = render_markdown(status_from_config(config), config=config)
    again = import_tracker(md, "rendered.md")
    assert again.model.not_understood == []
    assert [n.line for n in again.notes] == []
    # Nothing is claimed done: the rendered document ticks no box before any evaluation.
    assert "- [x]" not in md and sum(c.ticked is True for s in again.model.steps for c in s.claims) == 0


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path == "/health" else 503
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_render_from_a_real_evaluation(tmp_path, health_server):
    tracker = "\n".join([
        "# Service", "## Phase 1: Run", "### Step 1: Serve",
        f"- [x] Health: `curl -f {health_server}/health`",
        f"- [x] Broken: `curl -f {health_server}/broken`",
        "- [x] Reviewed: true",
        "**Automated Checks**: `true`",
        "### Step 2: All green",
        f"- [ ] Up: `curl -f {health_server}/health`",
    ])
    path = tmp_path / "service.yml"
    path.write_text(import_tracker(tracker, "service.md").yaml_text, encoding="utf-8")
    config = parse_config(path.read_text(encoding="utf-8"), str(path))
    run = asyncio.run(run_check(config))
    status = run.status()
    md = render_markdown(status, source="a one-shot evaluation", config=config)
    lines = gate_lines(md)
    assert lines["Health"].startswith(f"- [x] Health: `curl -f {health_server}/health` — ✅ pass")
    assert lines["Broken"].startswith("- [ ] Broken") and "❌ FAIL" in lines["Broken"]
    assert lines["Reviewed"].startswith("- [ ] Reviewed") and "not verified" in lines["Reviewed"]
    assert lines["Automated check"].startswith("- [x] Automated check: true — ✅ pass")
    assert "### Step 1: Serve - IN PROGRESS" in md
    assert "### Step 2: All green - COMPLETED" in md


def test_seed_rendered_on_this_machine_is_honest(tmp_path):
    """Most of the seed's claims cannot be verified here, and the rendered tracker must say so."""
    result = import_tracker_file(str(TRACKERS / "seed.md"))
    path = tmp_path / "seed.yml"  # commands run in this empty folder: nothing of the repo executes
    path.write_text(result.yaml_text, encoding="utf-8")
    config = parse_config(result.yaml_text, str(path))
    status = asyncio.run(run_check(config)).status()
    md = render_markdown(status, config=config)
    passed = [g for g in status["gates"] if g["status"] == "pass"]
    assert md.count("- [x]") == len(passed)
    lines = gate_lines(md)
    for g in status["gates"]:
        line = lines[g["title"].split(":")[0]] if g["title"].startswith("Automated check") else lines[g["title"]]
        if g["kind"] == "manual":
            assert line.startswith("- [ ]") and "not verified" in line, line
    assert "### Step 1: Core Infrastructure Stabilization - COMPLETED" not in md
    # Manual gates say "not verified"; push gates, judged here without the exporter's state, say so too.
    assert len(passed) < 5 and md.count("not verified") + md.count("no pushed evidence here") >= 69
    assert "Generated by qualitygate-exporter" in md


def test_render_accepts_the_live_status_document():
    config = parse_config(import_tracker_file(str(TRACKERS / "nested.md")).yaml_text, "nested.yml")
    status = progress_status(config, State())
    md = render_markdown(status, config=config)
    assert md.count("⏳ not verified: not evaluated yet") == len(config.gates)
    again = parse_config(import_tracker(md, "r.md").yaml_text, "again.yml")
    assert shape(again) == shape(config)


def test_several_trackers():
    one, two = small_status(), small_status()
    two["title"] = "Second"
    md = render_markdown({"trackers": [one, two]})
    assert md.count("## Phase Status Summary") == 2 and "# Second" in md


def test_import_serve_fetch_render(tmp_path, serve, health_server):
    """The whole loop: import a tracker, serve it, read /api/progress/status over HTTP, render it."""
    from exporter.tracker.fetch import FetchError, fetch_status, status_url
    from tests.conftest import wait_for

    tracker = "\n".join([
        "# Live", "## Phase 1: Run", "### Step 1: Serve",
        f"- [x] Health: `curl -f {health_server}/health`",
        "- [x] Reviewed: true",
    ])
    path = tmp_path / "live.yml"
    path.write_text(import_tracker(tracker, "live.md").yaml_text.replace("interval: 60s", "interval: 1s")
                    .replace("timeout: 10s", "timeout: 1s"), encoding="utf-8")
    served = serve(path)
    assert status_url(served.url) == served.url + "/api/progress/status"
    status = wait_for(lambda: (s := fetch_status(served.url, timeout=5)) and all(
        g["status"] != "pending" for g in s["gates"]) and s, timeout=30, what="every gate evaluated")
    assert status_url(served.url + "/api/progress/status/", "live") == served.url + "/api/progress/status?tracker=live"
    md = render_markdown(status, source=served.url)
    lines = gate_lines(md)
    assert lines["Health"].startswith("- [x] Health")
    assert lines["Reviewed"].startswith("- [ ] Reviewed") and "not verified: no attestation yet" in lines["Reviewed"]
    assert f"from {served.url}" in md
    with pytest.raises(FetchError, match="answered 404"):
        fetch_status(served.url, tracker="nope", timeout=5)
    with pytest.raises(FetchError, match="needs an http"):
        fetch_status("file:///etc/passwd")
