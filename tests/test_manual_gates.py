"""`manual` gates: pass only on a fresh attestation meeting `expect`; the endpoint refuses bad input."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exporter.config.model import parse_config
from exporter.engine.evaluate import evaluate
from exporter.probes import ProbeContext
from exporter.state.memory import State
from exporter.state.store import Attestation, open_store
from tests.conftest import ROOT, Served, one_step_tracker, parse_metrics, sample, wait_for, wait_listening

NOW = 1_800_000_000.0

GATES = """
- id: security-audit
  tier: critical
  manual: {max_age: 1d}
  expect: ">= 1"
- id: signoff
  manual: {max_age: 1h}
- id: disk
  file: {path: /etc/hostname}
- id: integration-coverage
  manual: {max_age: 1d}
  expect: ">= 90%"
- id: p99-latency
  manual: {max_age: 1d}
  expect: "< 500ms"
"""


def manual_tracker(name: str) -> str:
    """The test tracker under the tracker name `name`."""
    return one_step_tracker(GATES, tracker=name, title="Manual", defaults="{interval: 1h, timeout: 5s}")


async def run(gate_id: str, history) -> object:
    gate = parse_config(manual_tracker("m")).gate(gate_id)
    return await evaluate(gate, ProbeContext(gate_id=gate_id, timeout=5, history=history, now=lambda: NOW))


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(str(tmp_path / "s.db"))
    yield s
    s.close_sync()


async def test_no_attestation_fails(store) -> None:
    r = await run("security-audit", store.history("m", None))
    assert r.outcome == "fail" and "no attestation" in r.message


async def test_fresh_attestation_meeting_expect_passes(store) -> None:
    store.attest("m", "security-audit", Attestation(1.0, NOW - 3600, "alice", "pentest report #12")).result(10)
    r = await run("security-audit", store.history("m", None))
    assert r.outcome == "pass" and r.value == 1.0
    assert r.measurements["age"] == pytest.approx(3600)
    assert "alice" in r.message


async def test_fresh_attestation_below_expect_fails(store) -> None:
    store.attest("m", "security-audit", Attestation(0.0, NOW - 60, "alice")).result(10)
    r = await run("security-audit", store.history("m", None))
    assert r.outcome == "fail" and " is below " in r.message


async def test_stale_attestation_fails(store) -> None:
    store.attest("m", "security-audit", Attestation(1.0, NOW - 86400 - 1, "alice")).result(10)
    r = await run("security-audit", store.history("m", None))
    assert r.outcome == "fail" and "max_age 1d" in r.message


async def test_newest_attestation_counts(store) -> None:
    store.attest("m", "signoff", Attestation(1.0, NOW - 7200, "alice")).result(10)
    store.attest("m", "signoff", Attestation(0.0, NOW - 60, "bob")).result(10)
    r = await run("signoff", store.history("m", None))
    assert r.outcome == "pass" and r.value == 0.0  # no expect: any fresh attestation passes


async def test_in_memory_state_has_no_attestations() -> None:
    r = await run("signoff", State())
    assert r.outcome == "fail"


# --- through a real exporter -----------------------------------------------------------------


def post(url: str, body: bytes | str, content_type: str = "application/json",
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw.decode(errors="replace")}


def stored_attestations(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM attestations").fetchone()[0]


def test_endpoint_refuses_bad_input_and_stores_nothing(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    s = serve(write_config(manual_tracker("m")), "--storage.path", str(db))
    url = s.url + "/api/gates/{}/attestations"
    cases = [
        (url.format("nope"), '{"value": 1}', "application/json", 404, "unknown gate 'nope'"),
        (url.format("disk"), '{"value": 1}', "application/json", 409, "only manual gates"),
        (url.format("security-audit"), '{"value": "one"}', "application/json", 400, "invalid value 'one'"),
        (url.format("security-audit"), '{"value": [1]}', "application/json", 400, "must be a number, true, false"),
        (url.format("security-audit"), '{"value": 1, "note": "\\ud800"}', "application/json", 400,
         "note is not valid Unicode"),
        (url.format("security-audit"), '{"value": 1, "by": "x\\udfff"}', "application/json", 400,
         "by is not valid Unicode"),
        (url.format("security-audit"), b'{"value": 1, "note": "\xff"}', "application/json", 400, "not valid JSON"),
        (url.format("security-audit"), json.dumps({"value": "1" * 65}), "application/json", 400, "longer than 64"),
        (url.format("integration-coverage"), '{"value": 42}', "application/json", 400,
         "42 is ambiguous for '>= 90%': write it with its unit, e.g. 42%"),
        (url.format("integration-coverage"), '{"value": "42"}', "application/json", 400,
         "42 is ambiguous for '>= 90%'"),
        (url.format("integration-coverage"), '{"value": "95ms"}', "application/json", 400,
         "95ms is a duration, but '>= 90%' is about a ratio"),
        (url.format("integration-coverage"), '{"value": true}', "application/json", 400, "ambiguous"),
        (url.format("p99-latency"), '{"value": 0.3}', "application/json", 400,
         "0.3 is ambiguous for '< 500ms': write it with its unit, e.g. 0.3ms"),
        (url.format("p99-latency"), '{"value": "30%"}', "application/json", 400, "30% is a ratio"),
        (url.format("security-audit"), '{"value": NaN}', "application/json", 400, "finite"),
        (url.format("security-audit"), '{"value": 1e999}', "application/json", 400, "finite"),
        (url.format("security-audit"), '{"note": "x"}', "application/json", 400, "missing field 'value'"),
        (url.format("security-audit"), '{"value": 1, "admin": true}', "application/json", 400, "unknown field 'admin'"),
        (url.format("security-audit"), '[1]', "application/json", 400, "JSON object"),
        (url.format("security-audit"), '{"value": 1', "application/json", 400, "not valid JSON"),
        (url.format("security-audit"), '{"value": 1, "note": 5}', "application/json", 400, "note must be a string"),
        (url.format("security-audit"), json.dumps({"value": 1, "note": "x" * 1001}), "application/json", 400,
         "longer than 1000"),
        (url.format("security-audit"), json.dumps({"value": 1, "by": "eve\nadmin"}), "application/json", 400,
         "control characters"),
        (url.format("security-audit"), "value=1", "application/x-www-form-urlencoded", 415, "application/json"),
        (url.format("security-audit") + "?tracker=other", '{"value": 1}', "application/json", 404, "unknown tracker"),
    ]
    for target, body, ctype, status, message in cases:
        got_status, doc = post(target, body, ctype)
        assert got_status == status, (body, doc)
        assert message in doc.get("error", ""), (body, doc)
    big = json.dumps({"value": 1, "note": "x" * 100_000})
    status, doc = post(url.format("security-audit"), big)
    assert status == 413 and "too large" in doc["error"], doc  # the JSON error shape, as every other refusal
    detail = json.loads(s.get("/api/gates/security-audit")[1])
    assert detail["attestations"] == []
    assert detail["status"] == "fail"
    assert json.loads(s.get("/api/gates/integration-coverage")[1])["attestations"] == []
    s.stop()
    assert stored_attestations(db) == 0


def test_attestation_passes_the_gate_at_once_and_survives_a_restart(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    s = serve(config, "--storage.path", str(db))
    wait_for(lambda: json.loads(s.get("/api/gates/security-audit")[1])["status"] == "fail", timeout=30,
             what="first evaluation")
    status, doc = post(s.url + "/api/gates/security-audit/attestations",
                       json.dumps({"value": True, "note": "pentest #12 clean", "by": "alice"}))
    assert status == 201, doc
    assert doc["persisted"] is True and doc["reevaluating"] is True
    assert doc["attestation"]["by"] == "alice" and doc["attestation"]["value"] == 1.0
    # The gate's interval is 1h: only the triggered re-evaluation can make it pass this soon.
    wait_for(lambda: json.loads(s.get("/api/gates/security-audit")[1])["status"] == "pass", timeout=30,
             what="re-evaluation after the attestation")
    detail = json.loads(s.get("/api/gates/security-audit")[1])
    assert [(a["value"], a["by"], a["note"]) for a in detail["attestations"]] == [(1.0, "alice", "pentest #12 clean")]
    assert "attestations" not in json.loads(s.get("/api/gates/disk")[1])
    s.stop()
    assert stored_attestations(db) == 1

    s2 = serve(config, "--storage.path", str(db))
    m = parse_metrics(s2.get("/metrics")[1])
    assert sample(m, "gate_passed", gate="security-audit") == 1.0
    wait_for(lambda: json.loads(s2.get("/api/gates/security-audit")[1])["history"][0]["started"] >
             json.loads(s2.get("/api/gates/security-audit")[1])["history"][-1]["started"], timeout=30,
             what="a new evaluation after the restart")
    again = json.loads(s2.get("/api/gates/security-audit")[1])
    assert again["status"] == "pass", "the stored attestation still counts after the restart"
    assert again["attestations"][0]["note"] == "pentest #12 clean"


def test_several_trackers_need_the_tracker_parameter(tmp_path: Path, write_config, serve) -> None:
    one = write_config(manual_tracker("one"), "one.yml")
    two = write_config(manual_tracker("two"), "two.yml")
    db = tmp_path / "state.db"
    s = serve([one, two], "--storage.path", str(db))
    url = s.url + "/api/gates/signoff/attestations"
    status, doc = post(url, '{"value": 1}')
    assert status == 400 and "?tracker=" in doc["error"]
    status, doc = post(url + "?tracker=two", '{"value": 1}')
    assert status == 201 and doc["tracker"] == "two"
    s.stop()
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT g.tracker, g.gate FROM attestations a JOIN gates g USING (gid)").fetchall()
    assert rows == [("two", "signoff")]


def test_without_storage_attestations_are_refused(tmp_path: Path, write_config, serve) -> None:
    s = serve(write_config(manual_tracker("m")), "--storage.path", "")
    status, doc = post(s.url + "/api/gates/signoff/attestations", '{"value": 1}')
    assert status == 503 and "--storage.path" in doc["error"]
    assert "state kept in memory only" in s.log()
    assert "qualitygate_storage_up" not in s.get("/metrics")[1]


def test_authenticated_user_is_recorded_as_the_attester(tmp_path: Path, write_config, serve) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  carol: {hashed}\n")
    db = tmp_path / "state.db"
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file",
                                 str(write_config(manual_tracker("m"))), "--storage.path", str(db),
                                 "--web.config.file", str(web_config), "--web.listen-address", "127.0.0.1:0"],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=str(ROOT), text=True)
    s = Served(proc, wait_listening(proc, log_path), log_path)
    try:
        _run_authenticated(s, db)
    finally:
        assert s.stop() == 0, "the exporter shut down cleanly"


def _run_authenticated(s: Served, db: Path) -> None:
    import base64

    wait_for(lambda: s.proc.poll() is not None or s.get("/-/healthy", timeout=1)[0] == 401, timeout=30,
             what="exporter with auth to start")
    assert s.proc.poll() is None, s.log()
    url = s.url + "/api/gates/signoff/attestations"
    assert post(url, '{"value": 1}')[0] == 401
    token = base64.b64encode(b"carol:s3cret").decode()
    status, doc = post(url, '{"value": 1, "by": "mallory"}', headers={"Authorization": f"Basic {token}"})
    assert status == 201 and doc["attestation"]["by"] == "carol"  # who signed in, not who the body claims
    s.stop()
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT by FROM attestations").fetchall() == [("carol",)]


def test_check_reads_attestations_and_history_from_the_state_file(tmp_path: Path, write_config) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    store = open_store(str(db))
    store.attest("m", "security-audit", Attestation(1.0, time.time() - 60, "alice", "ok")).result(10)
    store.close_sync()
    run = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                          "--storage.path", str(db), "--tier", "critical"],
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "PASS" in run.stdout and "security-audit" in run.stdout
    missing = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                              "--storage.path", str(tmp_path / "nope.db")],
                             capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    without = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                              "--tier", "critical"],
                             capture_output=True, text=True, timeout=60, cwd=str(ROOT), check=False)
    assert without.returncode == 1, "no state file: no attestation, the critical manual gate fails"
