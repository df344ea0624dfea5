"""POST /api/gates/{id}/evidence against a real exporter: judgements, refusals, runs, branches, restarts."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import bcrypt
import pytest

from tests.conftest import TESTDATA, one_step_tracker, parse_metrics, sample, wait_for
from tests.push_support import PUSH_GATES

UNIT = (TESTDATA / "reports" / "junit" / "unit.xml").read_bytes()  # 5 tests, 1 failure, 1 skipped
INTEGRATION = (TESTDATA / "reports" / "junit" / "integration.xml").read_bytes()  # 3 tests, 1 error

# A probed gate beside the pushed ones: a push to it is refused.
GATES = PUSH_GATES + """\
- id: health
  http: {url: "http://127.0.0.1:9/"}
"""


def cobertura(rate: float, pad: int = 0) -> bytes:
    """A Cobertura report with this line rate (padded with a comment to `pad` bytes)."""
    head = f'<?xml version="1.0"?>\n<coverage line-rate="{rate}" branch-rate="0.5" version="1" timestamp="1">'
    body = f"<!--{'x' * max(0, pad - len(head) - 40)}--><packages/></coverage>\n"
    return (head + body).encode()


def post(url: str, body: bytes, token: str | None = "tok-a", **params: str) -> tuple[int, dict, dict]:
    """POST a report; (status, JSON body, headers)."""
    query = urllib.parse.urlencode(params)
    req = urllib.request.Request(f"{url}?{query}" if query else url, data=body, method="POST")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


@pytest.fixture
def tracker(tmp_path: Path, write_config):
    (tmp_path / "tokens").write_text("# CI push tokens\ntok-a\n\n  tok-b  \n")
    return write_config(one_step_tracker(GATES, push_tokens_file="tokens"))


def evidence_url(served, gate: str) -> str:
    return f"{served.url}/api/gates/{gate}/evidence"


def metrics(served) -> dict:
    return parse_metrics(served.get("/metrics")[1])


def stored(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT g.gate, p.branch, p.counts, p.sha256, p.commit_sha, p.run_id FROM pushes p "
                            "JOIN gates g ON g.gid = p.gid ORDER BY p.id").fetchall()


def test_a_push_is_judged_stored_and_moves_the_gate(serve, tracker, tmp_path):
    db = tmp_path / "state.db"
    s = serve(tracker, "--storage.path", str(db))
    assert "no evidence pushed from branch main yet" in json.loads(s.get("/api/gates/cov")[1])["message"]
    status, doc, _ = post(evidence_url(s, "cov"), cobertura(0.9), branch="main", commit="c1", run_id="1",
                          run_url="https://ci.example/run/1")
    assert status == 202, doc
    assert doc["status"] == "pass" and doc["value"] == 0.9 and doc["counts"] is True and doc["persisted"] is True
    assert doc["tracker"] == "t" and doc["gate"] == "cov" and doc["digest"].startswith("sha256:")
    assert "delta" not in doc  # no earlier push that counts
    wait_for(lambda: sample(metrics(s), "gate_passed", gate="cov") == 1.0, what="gate re-evaluated at once")
    assert sample(metrics(s), "gate_value", gate="cov") == 0.9

    # A pull request drops coverage by 2%: judged (fail, delta) and the gate keeps main's evidence.
    status, pr, _ = post(evidence_url(s, "cov"), cobertura(0.88), branch="feature", commit="c2")
    assert status == 202, pr
    assert pr["status"] == "fail" and pr["counts"] is False and pr["delta"] == pytest.approx(-0.02)
    assert "delta" in pr["message"] and "main" in pr["why_not_counted"]
    # Main drops by exactly 0.5%: meets "delta >= -0.5%".
    status, main, _ = post(evidence_url(s, "cov"), cobertura(0.895), branch="main", commit="c3")
    assert status == 202 and main["status"] == "pass" and main["delta"] == -0.005, main
    wait_for(lambda: sample(metrics(s), "gate_value", gate="cov") == 0.895, what="second main push shown")
    gate = json.loads(s.get("/api/gates/cov")[1])
    assert gate["status"] == "pass" and gate["evidence"]["commit"] == "c3", gate
    rows = stored(db)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("cov", "main", 1, "c1"), ("cov", "feature", 0, "c2"),
                                                       ("cov", "main", 1, "c3")]
    assert "tok-a" not in s.log()


def test_refusals_are_clear_and_store_nothing(serve, tracker, tmp_path, write_config):
    (tmp_path / "other-tokens").write_text("tok-other\n")
    other = write_config(one_step_tracker(GATES, tracker="u", push_tokens_file="other-tokens"), "u.yml")
    db = tmp_path / "state.db"
    s = serve([tracker, other], "--storage.path", str(db), "--web.max-evidence-bytes", "64KiB")
    url = evidence_url(s, "cov")
    report = cobertura(0.9)

    status, doc, headers = post(url, report, token=None, tracker="t")
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"), doc
    assert post(url, report, token="tok-wrong", tracker="t")[0] == 401
    assert post(url, report, token="tok-other", tracker="t")[0] == 401  # another tracker's token
    assert post(url, report, token="tok-other", tracker="u")[0] == 202
    assert post(url, report, token="tok-b", tracker="t")[0] == 202  # surrounding spaces in the file are no part
    status, doc, _ = post(url, report)  # two trackers loaded and none named
    assert status == 400 and "tracker" in doc["error"]
    assert post(f"{s.url}/api/gates/nope/evidence", report, tracker="t")[0] == 404
    assert post(f"{s.url}/api/gates/health/evidence", report, tracker="t")[0] == 409
    status, doc, _ = post(url, b"<html>not a report</html>", tracker="t")
    assert status == 400 and doc["error"].startswith("report"), doc
    status, doc, _ = post(url, cobertura(0.9, pad=200_000), tracker="t")
    assert status == 413 and "64KiB" in doc["error"], doc
    for bad in ({"branch": "x" * 300}, {"commit": "a\nb"}, {"run_url": "javascript:alert(1)"}):
        status, doc, _ = post(url, report, tracker="t", **bad)
        assert status == 400, (bad, doc)
    assert [r[0] for r in stored(db)] == ["cov", "cov"]  # the two 202s, nothing else
    log = s.log()
    assert "tok-wrong" not in log and "tok-other" not in log and "tok-a" not in log


def test_the_route_is_exempt_from_basic_auth_but_not_the_rest(serve, tracker, tmp_path):
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  dana: {bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    s = serve(tracker, "--web.config.file", str(web), probe=lambda s: True)
    wait_for(lambda: s.get("/metrics", timeout=1)[0] == 401, what="basic auth on /metrics")
    status, doc, _ = post(evidence_url(s, "cov"), cobertura(0.91), branch="main")
    assert status == 202 and doc["status"] == "pass", doc
    assert post(evidence_url(s, "cov"), cobertura(0.91), token=None)[0] == 401


def test_a_run_of_parallel_junit_pushes_is_summed_and_a_retry_counts_once(serve, tracker):
    s = serve(tracker)
    url = evidence_url(s, "tests")
    results: list[dict] = []
    threads = [threading.Thread(target=lambda b=b: results.append(post(url, b, run_id="77")[1]))
               for b in (UNIT, INTEGRATION)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["counts"] for r in results), results
    wait_for(lambda: sample(metrics(s), "gate_value", gate="tests") == pytest.approx(5 / 7), what="the run's sum")
    gate = json.loads(s.get("/api/gates/tests")[1])
    assert gate["measurements"]["tests"] == 8 and gate["measurements"]["errors"] == 1, gate
    status, again, _ = post(url, UNIT, run_id="77")  # the same report again: a retried CI step
    assert status == 202 and again["measurements"]["tests"] == 8, again
    status, fresh, _ = post(url, UNIT, run_id="78")  # a new run starts from its own reports
    assert fresh["measurements"]["tests"] == 5, fresh


def test_restart_and_kill_9_keep_what_was_acknowledged(serve, tracker, tmp_path):
    db = tmp_path / "state.db"
    s = serve(tracker, "--storage.path", str(db))
    assert post(evidence_url(s, "cov"), cobertura(0.9), branch="main", commit="c1")[0] == 202
    status, doc, _ = post(evidence_url(s, "tests"), UNIT, run_id="5")
    assert status == 202 and post(evidence_url(s, "tests"), INTEGRATION, run_id="5")[0] == 202
    s.stop(signal.SIGKILL)
    s2 = serve(tracker, "--storage.path", str(db))
    wait_for(lambda: sample(metrics(s2), "gate_value", gate="cov") == 0.9, what="restored coverage push")
    assert sample(metrics(s2), "gate_value", gate="tests") == pytest.approx(5 / 7)
    assert json.loads(s2.get("/api/gates/cov")[1])["evidence"]["commit"] == "c1"
    # The baseline survives too: the next push's delta is against the restored one.
    status, doc, _ = post(evidence_url(s2, "cov"), cobertura(0.8), branch="main")
    assert status == 202 and doc["delta"] == pytest.approx(-0.1) and doc["status"] == "fail", doc
    status, doc, _ = post(evidence_url(s2, "tests"), UNIT, run_id="5")  # the restored run goes on
    assert doc["measurements"]["tests"] == 8, doc


def test_memory_only_pushes_say_so(serve, tracker):
    s = serve(tracker, "--storage.path", "", storage=False)
    status, doc, _ = post(evidence_url(s, "cov"), cobertura(0.9), branch="main")
    assert status == 202 and doc["persisted"] is False and "memory only" in doc["note"], doc
    wait_for(lambda: sample(metrics(s), "gate_passed", gate="cov") == 1.0, what="memory-only push counts")
    assert "pushed evidence" in s.log()


def test_max_age_is_a_heartbeat(serve, tmp_path, write_config):
    (tmp_path / "tokens").write_text("tok-a\n")
    config = write_config(one_step_tracker("""
        - id: beat
          interval: 1s
          timeout: 1s
          json_file: {push: {max_age: 1s}, json_path: "$.n"}
          expect: "value > 0"
        """, push_tokens_file="tokens"))
    s = serve(config)
    status, doc, _ = post(evidence_url(s, "beat"), b'{"n": 3}')
    assert status == 202 and doc["status"] == "pass", doc
    wait_for(lambda: "no evidence since" in json.loads(s.get("/api/gates/beat")[1])["message"], timeout=15,
             what="the heartbeat lapsed")
    assert sample(metrics(s), "gate_passed", gate="beat") == 0.0


def test_pushes_racing_reloads_lose_nothing_acknowledged(serve, tracker, tmp_path):
    db = tmp_path / "state.db"
    s = serve(tracker, "--storage.path", str(db), "--web.enable-lifecycle")
    original = tracker.read_text()
    http_gate = original.replace("coverage: {push: {max_age: 1d, branch: main}}", 'http: {url: "http://127.0.0.1:9/"}'
                                 ).replace('expect: ["value >= 85%", "delta >= -0.5%"]', 'expect: "status == 200"')
    answers: list[tuple[int, dict]] = []

    def pushes() -> None:
        for i in range(40):
            status, doc, _ = post(evidence_url(s, "cov"), cobertura(0.86 + i / 1000), branch="main")
            answers.append((status, doc))

    worker = threading.Thread(target=pushes)
    worker.start()
    for i in range(12):  # the gate flips between push-sourced and http while pushes arrive
        tracker.write_text(http_gate if i % 2 == 0 else original)
        req = urllib.request.Request(f"{s.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=20).read()
    worker.join()
    codes = {status for status, _ in answers}
    assert codes <= {202, 409}, answers
    for status, doc in answers:
        if status == 409:
            assert "push" in doc["error"], doc
    acknowledged = {doc["digest"].removeprefix("sha256:") for status, doc in answers if status == 202}
    assert acknowledged <= {r[3] for r in stored(db)}  # every 202 is in the file
    tracker.write_text(original)
    urllib.request.urlopen(urllib.request.Request(f"{s.url}/-/reload", method="POST"), timeout=20).read()
    if acknowledged:  # the gate is push-sourced again and judged on the last acknowledged push
        last = max((doc for status, doc in answers if status == 202), key=lambda d: d["received_at"])
        wait_for(lambda: sample(metrics(s), "gate_value", gate="cov") == last["value"], what="last push back")


def test_a_real_bandit_sarif_push_fails_with_the_parser_words(serve, tmp_path, write_config):
    (tmp_path / "tokens").write_text("tok-a\n")
    config = write_config(one_step_tracker("""
        - id: scan
          sarif: {push: {max_age: 1d}, level: warning}
        """, push_tokens_file="tokens"))
    reports = {}
    for name in ("finding", "clean"):
        out = tmp_path / f"{name}.sarif"
        source = TESTDATA / "reports" / "sarif" / f"{name}.py"
        subprocess.run([sys.executable, "-m", "bandit", "-q", "-f", "sarif", "-o", str(out), str(source)],
                       capture_output=True, timeout=120)
        reports[name] = out.read_bytes()
    s = serve(config)
    status, doc, _ = post(evidence_url(s, "scan"), reports["finding"])
    assert status == 202 and doc["status"] == "fail" and doc["value"] >= 1, doc
    wait_for(lambda: json.loads(s.get("/api/gates/scan")[1])["message"] == doc["message"], what="the gate's words")
    status, doc, _ = post(evidence_url(s, "scan"), reports["clean"])
    assert status == 202 and doc["status"] == "pass" and doc["value"] == 0, doc
    wait_for(lambda: sample(metrics(s), "gate_passed", gate="scan") == 1.0, what="clean scan passes")
