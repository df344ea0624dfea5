"""Awaiting evidence is not failing: a real serve with a manual gate never attested, then attested.

A real exporter (subprocess, state file), a real attestation over HTTP from loopback, promtool on
the real /metrics, and a real Prometheus running the shipped rules (every `for` shortened).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import Served, parse_metrics, sample, wait_for
from rules_support import shortened_rules
from stack_support import promql, start_prometheus

CONFIG = """
tracker: ev
title: Evidence
defaults: {interval: 1s, timeout: 900ms}
phases:
  - id: release
    steps:
      - id: signoffs
        gates:
          - id: signoff
            title: Release sign-off
            tier: critical
            manual: {max_age: 1h}
          - id: broken
            title: Smoke test
            tier: critical
            command: {argv: ["false"]}
          - id: fine
            tier: important
            command: {argv: ["true"]}
"""
MAX_AGE = 3600.0


def metrics(served: Served) -> dict:
    status, text = served.get("/metrics")
    assert status == 200
    return parse_metrics(text)


def status_doc(served: Served) -> dict:
    return json.loads(served.get("/api/progress/status")[1])


def attest(served: Served, gate: str) -> dict:
    request = urllib.request.Request(f"{served.url}/api/gates/{gate}/attestations", method="POST",
                                     data=json.dumps({"value": True, "by": "alice", "note": "checked"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201
        return json.loads(answer.read())


def evaluated(served: Served) -> dict | None:
    m = metrics(served)
    return m if all(sample(m, "gate_passed", gate=g) is not None for g in ("signoff", "broken", "fine")) else None


def awaiting_section(page: str) -> str:
    """The HTML of the page's "Awaiting evidence" section ("" when there is none)."""
    found = re.search(r'<section class="awaiting".*?</section>', page, re.S)
    return found.group(0) if found else ""


def blockers_section(page: str) -> str:
    found = re.search(r'<section class="blockers".*?</section>', page, re.S)
    assert found, "the page always has a blockers section"
    return found.group(0)


def test_a_manual_gate_awaits_evidence_until_attested(serve, write_config):
    served = serve(write_config(CONFIG))
    m = wait_for(lambda: evaluated(served), timeout=30, what="every gate evaluated")
    assert sample(m, "gate_awaiting_evidence", gate="signoff", tier="critical") == 1
    assert sample(m, "gate_passed", gate="signoff") == 0, "a claim nobody evidenced is never passed"
    assert sample(m, "gate_evidence_timestamp_seconds", gate="signoff") is None
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="signoff") is None
    assert sample(m, "gate_info", gate="signoff", kind="manual") == 1
    assert sample(m, "gate_info", gate="broken", kind="command") == 1
    assert sample(m, "gate_awaiting_evidence", gate="broken") is None, "probe gates have no evidence series"

    doc = status_doc(served)
    gates = {g["id"]: g for g in doc["gates"]}
    assert gates["signoff"]["status"] == "fail" and gates["signoff"]["awaiting_evidence"] is True
    assert gates["signoff"]["evidence"] is None
    assert gates["broken"]["evidence"]["kind"] == "probe" and "awaiting_evidence" not in gates["broken"]
    assert [b["gate"] for b in doc["blockers"]] == ["broken"], "awaiting is not a measured failure"
    assert [(a["gate"], a["tier"], a["kind"]) for a in doc["awaiting_evidence"]] == [("signoff", "critical", "manual")]

    status, page = served.get("/")
    assert status == 200
    awaiting = awaiting_section(page)
    assert "Awaiting evidence" in awaiting and 'data-awaiting-gate="signoff"' in awaiting
    assert "Release sign-off" in awaiting
    blockers = blockers_section(page)
    assert 'data-gate="broken"' in blockers and "/gates/signoff" not in blockers

    if shutil.which("promtool"):
        text = served.get("/metrics")[1].encode()
        proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b"", proc.stdout + proc.stderr

    answer = attest(served, "signoff")
    at = answer["attestation"]["at_seconds"]

    def attested() -> dict | None:
        m = metrics(served)
        return m if sample(m, "gate_awaiting_evidence", gate="signoff") == 0 else None

    m = wait_for(attested, timeout=30, what="the attestation judged")
    assert sample(m, "gate_passed", gate="signoff") == 1
    assert sample(m, "gate_evidence_timestamp_seconds", gate="signoff") == pytest.approx(at)
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="signoff") == pytest.approx(at + MAX_AGE)

    doc = status_doc(served)
    signoff = {g["id"]: g for g in doc["gates"]}["signoff"]
    assert signoff["awaiting_evidence"] is False
    assert signoff["evidence"] == {"kind": "attestation", "at": answer["attestation"]["at"], "by": "alice",
                                   "note": "checked", "expires_at": signoff["evidence"]["expires_at"]}
    assert signoff["evidence"]["expires_at"] > signoff["evidence"]["at"]
    assert doc["awaiting_evidence"] == []
    assert awaiting_section(served.get("/")[1]) == "", "nothing awaits: no section"

    # After a restart the gate is judged on the stored attestation again: not awaiting.
    served.stop()
    again = serve(write_config(CONFIG, "again.yml"), "--storage.path", str(_state_file(served)))
    m = wait_for(lambda: evaluated(again), timeout=30, what="every gate evaluated after the restart")
    wait_for(lambda: sample(metrics(again), "gate_evidence_timestamp_seconds", gate="signoff") is not None,
             timeout=30, what="the stored attestation judged")
    m = metrics(again)
    assert sample(m, "gate_awaiting_evidence", gate="signoff") == 0
    assert sample(m, "gate_evidence_timestamp_seconds", gate="signoff") == pytest.approx(at)


def _state_file(served: Served) -> Path:
    """The --storage.path the serve fixture gave this exporter."""
    args = served.proc.args
    assert isinstance(args, list)
    return Path(args[args.index("--storage.path") + 1])


def alerts(prometheus: Served, name: str) -> dict[str, str]:
    """gate -> state (pending | firing) of the alert `name` in the real Prometheus."""
    answer = promql(prometheus.url, f'ALERTS{{alertname="{name}"}}')
    assert answer["status"] == "success", answer
    return {r["metric"]["gate"]: r["metric"]["alertstate"] for r in answer["data"]["result"]}


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus is installed by scripts/system-deps.sh")
def test_prometheus_reports_the_unattested_critical_gate_as_awaiting_not_failing(tmp_path, serve, write_config):
    exporter = serve(write_config(CONFIG))
    workdir = tmp_path / "prom"
    workdir.mkdir()
    prometheus = start_prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in shortened_rules(tmp_path / "rules")],
        "scrape_configs": [{"job_name": "qualitygate",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}],
    }, workdir)
    try:
        # The measured failure is the control: the same rules, the same timing, page for it.
        wait_for(lambda: alerts(prometheus, "QualityGateCriticalFailing").get("broken") == "firing",
                 timeout=60, what="QualityGateCriticalFailing firing for the failing critical gate")
        wait_for(lambda: alerts(prometheus, "QualityGateAwaitingEvidence").get("signoff") == "firing",
                 timeout=60, what="QualityGateAwaitingEvidence firing for the unattested gate")
        assert alerts(prometheus, "QualityGateCriticalFailing") == {"broken": "firing"}, "signoff does not page"
        assert alerts(prometheus, "QualityGateAwaitingEvidence") == {"signoff": "firing"}
        assert alerts(prometheus, "QualityGateEvidenceExpired") == {}
        answer = promql(prometheus.url, 'ALERTS{alertname="QualityGateAwaitingEvidence"}')
        assert answer["data"]["result"][0]["metric"]["severity"] == "info"

        attest(exporter, "signoff")
        wait_for(lambda: alerts(prometheus, "QualityGateAwaitingEvidence") == {}, timeout=60,
                 what="QualityGateAwaitingEvidence resolved once attested")
        assert alerts(prometheus, "QualityGateCriticalFailing") == {"broken": "firing"}
        assert alerts(prometheus, "QualityGateEvidenceExpired") == {}
    finally:
        prometheus.stop()
