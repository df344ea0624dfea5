"""`qualitygate report --since`: a history written through the real Store at chosen times, read by the real CLI.

The clock is ours: every Result carries the time we give it (days in the past, aligned to UTC days so
that the daily buckets the history ends up in are known), the Store's writer commits them to a real
SQLite file and compacts it as serve does; then `qualitygate report` runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import datetime
import html.parser
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.config.model import load_config
from exporter.model import ERROR, FAIL, PASS, Result
from exporter.state.evidence import Push
from exporter.state.store import Attestation, open_store
from tests.conftest import ROOT

DAY, HOUR = 86400, 3600

CONFIG = """\
tracker: team
title: Team <release> tracker
uptime_window: 30d
phases:
  - id: build
    title: Build & test
    steps:
      - id: ci
        title: CI
        gates:
          - id: api-up
            title: API answers
            tier: critical
            http: {url: "http://user:secret@127.0.0.1:9/health?token=abc"}
          - id: nightly
            title: Nightly suite
            tier: important
            file: {path: nightly.ok}
          - id: lint
            title: "Lint <script>alert(1)</script>"
            tier: enhancement
            file: {path: lint.ok}
  - id: release
    title: Release
    steps:
      - id: signoff
        title: Sign-off
        gates:
          - id: audit
            title: Security audit
            tier: critical
            manual: {max_age: 10d}
          - id: cov
            title: Coverage
            tier: important
            coverage: {push: {max_age: 1d, branch: main}}
            expect: ">= 80%"
"""


def qg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(cwd), env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def day_of(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A state file holding 10 days of hourly evaluations of five gates, with known changes in it."""
    tmp = tmp_path_factory.mktemp("report")
    cfg = tmp / "team.yml"
    cfg.write_text(CONFIG)
    config = load_config(str(cfg))
    now = time.time()
    # The UTC midnight the days are counted from, at least 6 hours back: the ring (the last 50 hourly
    # evaluations, about 51 hours) then never reaches into day -3, whose change the tests expect known to
    # the day (from 00:00 to 03:00 UTC it would, and the change would be known only from 00:00 to 23:00).
    midnight = (now - 6 * HOUR) // DAY * DAY
    start = midnight - 10 * DAY
    broke = midnight - 5 * DAY + 12 * HOUR  # api-up fails from noon of day -5 on
    fixed = midnight - 3 * DAY + 12 * HOUR  # nightly passes from noon of day -3 on
    attested = midnight - 8 * DAY + 12 * HOUR  # audit attested then, valid 10 days: lapses in about 2 days
    db = tmp / "state.db"
    store = open_store(str(db))
    store.configured([config], now=now)

    def rec(gate: str, outcome: str, at: float, message: str = "") -> None:
        store.record("team", Result(gate, outcome, at, 0.01, {"value": 1.0 if outcome == PASS else 0.0}, message))

    t = start
    while t < now - 2 * HOUR:
        rec("api-up", PASS if t < broke else FAIL, t, "" if t < broke else "connection refused")
        rec("nightly", PASS if t >= fixed else FAIL, t)
        rec("lint", PASS, t)
        if t >= attested:
            rec("audit", PASS, t)
        t += HOUR
    # lint's last two hours, to the evaluation: a fail, an error, then a pass again.
    lint_broke, lint_fixed = now - 90 * 60, now - 30 * 60
    rec("lint", FAIL, lint_broke, "3 findings")
    rec("lint", ERROR, now - 60 * 60, "linter crashed")
    rec("lint", PASS, lint_fixed)
    store.attest("team", "audit", Attestation(1.0, attested, by="mallory <b>", note="pentest #12 <i>ok</i>"))
    pushed = now - 20 * HOUR
    push = Push.of(b"<coverage line-rate='0.9'/>", measurements={"value": 0.9}, counts=True, commit="c0ffee" * 6,
                   branch="main", run_url="https://ci.example/run/7", run_id="7", received_at=pushed)
    asyncio.run(store.add_push("team", "cov", push))
    rec("cov", PASS, pushed)
    store.maintain(now)  # compaction as serve's writer runs it: older buckets become hourly, then daily
    assert store.flush(30)
    store.close_sync()
    return {"dir": tmp, "cfg": cfg, "db": db, "now": now, "broke": broke, "fixed": fixed, "attested": attested,
            "lint_broke": lint_broke, "lint_fixed": lint_fixed, "pushed": pushed}


def report(h: dict, *extra: str) -> subprocess.CompletedProcess[str]:
    return qg("report", "--config.file", str(h["cfg"]), "--storage.path", str(h["db"]), *extra, cwd=h["dir"])


def rows(text: str, needle: str) -> list[str]:
    return [ln for ln in text.splitlines() if needle in ln]


def test_markdown_report_over_seven_days(history: dict) -> None:
    got = report(history, "--since", "7d")
    assert got.returncode == 0, got.stderr
    md = got.stdout
    # Completion then (7 days ago: api-up, lint and audit passed; nightly failed; cov not yet evaluated) and now.
    assert rows(md, "**Overall**") == ["| **Overall** | 60% (3 of 5) | 80% (4 of 5) | +20 pts |"]
    assert rows(md, "| Build & test |") == ["| Build & test | 67% (2 of 3) | 67% (2 of 3) | no change |"]
    assert rows(md, "| Release |") == ["| Release | 50% (1 of 2) | 100% (2 of 2) | +50 pts |"]
    # api-up regressed on day -5 (a daily bucket by now: known to the day), nightly recovered on day -3.
    assert "## Changes (2 regressed, 2 recovered)" in md
    (api,) = rows(md, "`api-up`")[:1]
    assert f"on {day_of(history['broke'])} (UTC day)" in api and "regressed" in api and "| fail |" in api
    (nightly,) = rows(md, "| Nightly suite")
    assert f"on {day_of(history['fixed'])} (UTC day)" in nightly and "recovered" in nightly
    # lint's change is in the ring of recent evaluations: known to the minute.
    lint = rows(md, "`lint`")
    stamp = datetime.datetime.fromtimestamp(history["lint_broke"], datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert any(stamp in ln and "regressed to fail" in ln for ln in lint), lint
    fixed = datetime.datetime.fromtimestamp(history["lint_fixed"], datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert any(fixed in ln and "recovered" in ln for ln in lint), lint
    # The changes table is in time order.
    table = [ln for ln in md.split("## Changes")[1].split("## Blockers")[0].splitlines() if ln.startswith("| ")][1:]
    assert [("api-up" in r, "nightly" in r) for r in table[:2]] == [(True, False), (False, True)]
    # Blockers with their age: api-up has failed for between 4.5 and 5.5 days.
    (blocker,) = rows(md.split("## Blockers")[1], "`api-up`")
    assert "| critical | fail |" in blocker and ("| 4d " in blocker or "| 5d " in blocker)
    assert "connection refused" in blocker
    # Evidence lapsing within the next 7 days: the audit's attestation (in about 2 days) and the push (in ~4h).
    expiring = md.split("## Evidence expiring within the next 7d (2)")[1]
    (audit,) = rows(expiring, "`audit`")
    assert "attested by mallory \\<b\\>: pentest #12 \\<i\\>ok\\</i\\>" in audit
    assert "| in 1d " in audit or "| in 2d " in audit  # noon of day +2
    (cov,) = rows(expiring, "`cov`")
    assert "push c0ffeec0ffee (main) [run](<https://ci.example/run/7>)" in cov and "| in 3h" in cov
    assert expiring.index("`cov`") < expiring.index("`audit`")  # soonest first
    # Text from the config is escaped for markdown.
    assert "Lint \\<script\\>alert(1)\\</script\\>" in md and "<script>" not in md


def test_since_one_day_sees_only_the_recent_changes(history: dict) -> None:
    got = report(history, "--since", "1d")
    assert got.returncode == 0, got.stderr
    assert "## Changes (1 regressed, 1 recovered)" in got.stdout
    assert "api-up" not in got.stdout.split("## Changes")[1].split("## Blockers")[0]
    assert "| **Overall** | 60% (3 of 5) | 80% (4 of 5) | +20 pts |" in got.stdout  # cov pushed 20h ago
    assert "## Evidence expiring within the next 1d (1)" in got.stdout  # the push; the audit lapses in ~2d


class _Parsed(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links += [v or "" for k, v in attrs if k == "href"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_is_escaped_and_written_to_a_file(history: dict) -> None:
    out = history["dir"] / "weekly.html"
    got = report(history, "--since", "7d", "--format", "html", "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert got.stdout == ""
    page = out.read_text()
    parsed = _Parsed()
    parsed.feed(page)
    text = "".join(parsed.text)
    assert "script" not in parsed.tags and "b" not in parsed.tags and "i" not in parsed.tags
    assert "Lint <script>alert(1)</script>" in text and "Team <release> tracker: the last 7d" in text
    assert "attested by mallory <b>: pentest #12 <i>ok</i>" in text
    assert parsed.links == ["https://ci.example/run/7"]
    assert 'data-gate="api-up" data-change="regressed"' in page
    assert 'data-gate="nightly" data-change="recovered"' in page


def test_refusals_are_one_line_and_exit_2(history: dict, tmp_path: Path) -> None:
    longer = report(history, "--since", "45d")
    assert longer.returncode == 2
    assert longer.stderr.strip() == ("qualitygate: --since 45d: tracker team keeps 30d of history (its "
                                     "uptime_window): ask for at most that, or raise uptime_window")
    bad = report(history, "--since", "a week")
    assert bad.returncode == 2 and bad.stderr.startswith("qualitygate: --since: invalid duration") \
        and len(bad.stderr.splitlines()) == 1
    missing = qg("report", "--since", "7d", "--config.file", str(history["cfg"]), "--storage.path",
                 str(tmp_path / "none.db"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and len(missing.stderr.splitlines()) == 1
    folder = report(history, "--since", "7d", "-o", str(tmp_path))
    assert folder.returncode == 2 and "is a directory" in folder.stderr
