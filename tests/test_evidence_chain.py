"""Evidence through the pipeline: probe -> evaluate -> state -> /metrics and the status document.

The manual and push probes are the real ones, judged by the real evaluate; attestations are the
store's own record type and pushes the probes' PushRecord, handed over through the History and
`evidence` hooks the scheduler fills in a serve (tests/test_evidence_serve.py runs that for real).
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.config.model import Config, parse_config
from exporter.engine.evaluate import evaluate
from exporter.exposition.gates import EVIDENCE_METRICS, Exposition
from exporter.model import Result
from exporter.probes.base import ProbeContext, PushRecord
from exporter.report.status import progress_status
from exporter.state.memory import State
from exporter.state.store import Attestation
from tests.conftest import parse_metrics, sample

CONFIG = """
tracker: ev
title: Evidence
phases:
  - id: p
    steps:
      - id: s
        gates:
          - id: probe-gate
            tier: critical
            file: {path: /etc/hostname}
          - id: signoff
            tier: critical
            manual: {max_age: 1d}
          - id: review
            tier: important
            manual: {max_age: 7d}
          - id: coverage
            tier: important
            coverage: {push: {max_age: 2h, branch: main}}
            expect: ">= 80%"
          - id: scan
            tier: critical
            sarif: {push: {max_age: 1d}}
"""
NOW = 1_760_000_000.0
DIGEST = "ab" * 32


class Attested:
    """The probes' History protocol over a dict of the store's Attestation records."""

    def __init__(self) -> None:
        self.atts: dict[str, Attestation] = {}

    def pass_ratio(self, gate_id: str, window: float, now: float) -> tuple[int, int]:
        return (0, 0)

    def latest_attestation(self, gate_id: str) -> Attestation | None:
        return self.atts.get(gate_id)


class World:
    """One tracker evaluated by the real engine into a State and an Exposition."""

    def __init__(self) -> None:
        self.config: Config = parse_config(CONFIG)
        self.state = State()
        self.history = Attested()
        self.pushes: dict[str, PushRecord] = {}
        self.now = NOW
        self.expo = Exposition(registry=None)
        self.expo.set_trackers([(self.config, self.state)])

    def run(self, *gate_ids: str) -> dict[str, Result]:
        out = {}
        for gid in gate_ids or [g.id for g in self.config.gates]:
            gate = self.config.gate(gid)
            ctx = ProbeContext(gid, 5.0, history=self.history, now=lambda: self.now, evidence=self.pushes.get)
            result = asyncio.run(evaluate(gate, ctx))
            st = self.state.record(result)
            self.expo.update(gate, st, self.config.uptime_window, self.now)
            out[gid] = result
        return out

    def metrics(self) -> dict:
        return parse_metrics(self.expo.render().decode())


def fresh_render(world: World) -> bytes:
    """What a new exposition renders from the same state: the incremental one must say the same."""
    expo = Exposition(registry=None)
    expo.set_trackers([(world.config, world.state)])
    return expo.render()


def test_never_evidenced_gates_are_awaiting_and_fail_while_probe_gates_are_not_evidence_gates():
    w = World()
    results = w.run()
    for gid in ("signoff", "review", "coverage", "scan"):
        assert results[gid].outcome == "fail" and results[gid].awaiting and results[gid].evidence is None, gid
    assert results["probe-gate"].evidence is not None and results["probe-gate"].evidence.kind == "probe"
    assert not results["probe-gate"].awaiting
    m = w.metrics()
    for gid in ("signoff", "review", "coverage", "scan"):
        assert sample(m, "gate_awaiting_evidence", gate=gid) == 1, gid
        assert sample(m, "gate_passed", gate=gid) == 0, "awaiting evidence is never passing"
        assert sample(m, "gate_evidence_timestamp_seconds", gate=gid) is None
        assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate=gid) is None
    # Probe gates have no evidence series at all: 10,000 probe gates add no samples.
    for name in EVIDENCE_METRICS:
        assert sample(m, name, gate="probe-gate") is None
    assert sample(m, "gate_info", gate="probe-gate", kind="file") == 1
    assert sample(m, "gate_info", gate="coverage", kind="coverage") == 1
    assert sample(m, "gate_info", gate="signoff", kind="manual") == 1

    doc = progress_status(w.config, w.state, NOW)
    gates = {g["id"]: g for g in doc["gates"]}
    assert gates["signoff"]["awaiting_evidence"] is True and gates["signoff"]["evidence"] is None
    assert "awaiting_evidence" not in gates["probe-gate"], "only gates evidenced from outside say it"
    assert gates["probe-gate"]["evidence"]["kind"] == "probe"
    assert gates["probe-gate"]["evidence"]["at"] == gates["probe-gate"]["last_evaluation"]
    assert doc["blockers"] == [], "nothing measured has failed: no blockers"
    # Critical first, config order within a tier.
    assert [(a["gate"], a["tier"]) for a in doc["awaiting_evidence"]] == [
        ("signoff", "critical"), ("scan", "critical"), ("review", "important"), ("coverage", "important")]
    assert doc["awaiting_evidence"][0]["message"] == "no attestation yet (qualitygate attest)"


def test_attestation_and_push_fill_evidence_series_and_json():
    w = World()
    w.run()
    w.history.atts["signoff"] = Attestation(1.0, NOW - 600, "alice", "release checklist done")
    w.pushes["coverage"] = PushRecord(NOW - 60, {"value": 0.91}, branch="main", commit="c0ffee",
                                      run_url="https://ci.example/run/7", run_id="7", digest=DIGEST)
    w.now = NOW
    w.run("signoff", "coverage")
    m = w.metrics()
    assert sample(m, "gate_awaiting_evidence", gate="signoff") == 0
    assert sample(m, "gate_evidence_timestamp_seconds", gate="signoff") == NOW - 600
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="signoff") == NOW - 600 + 86400
    assert sample(m, "gate_passed", gate="signoff") == 1
    assert sample(m, "gate_awaiting_evidence", gate="coverage") == 0
    assert sample(m, "gate_evidence_timestamp_seconds", gate="coverage") == NOW - 60
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="coverage") == NOW - 60 + 7200
    assert sample(m, "gate_passed", gate="coverage") == 1
    assert sample(m, "gate_awaiting_evidence", gate="review") == 1, "the other gates still await"
    assert w.expo.render() == fresh_render(w), "the incremental renderer agrees with a full render"
    assert gzip.decompress(w.expo.render(gzip=True)) == fresh_render(w)

    doc = progress_status(w.config, w.state, NOW)
    gates = {g["id"]: g for g in doc["gates"]}
    assert gates["signoff"]["awaiting_evidence"] is False
    assert gates["signoff"]["evidence"] == {"kind": "attestation", "at": "2025-10-09T08:43:20Z", "by": "alice",
                                            "note": "release checklist done", "expires_at": "2025-10-10T08:43:20Z"}
    assert gates["coverage"]["evidence"] == {
        "kind": "push", "at": "2025-10-09T08:52:20Z", "commit": "c0ffee", "branch": "main",
        "run_url": "https://ci.example/run/7", "run_id": "7", "expires_at": "2025-10-09T10:52:20Z", "digest": DIGEST}
    assert [a["gate"] for a in doc["awaiting_evidence"]] == ["scan", "review"]


def test_lapsed_evidence_fails_with_its_expiry_and_is_a_blocker_not_awaiting():
    w = World()
    w.history.atts["signoff"] = Attestation(1.0, NOW - 2 * 86400, "bob")
    w.pushes["coverage"] = PushRecord(NOW - 3 * 3600, {"value": 0.91}, branch="main")
    results = w.run("signoff", "coverage")
    assert results["signoff"].outcome == "fail" and not results["signoff"].awaiting
    assert results["coverage"].outcome == "fail" and results["coverage"].message.startswith("no evidence since ")
    m = w.metrics()
    assert sample(m, "gate_awaiting_evidence", gate="signoff") == 0
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="signoff") == NOW - 86400  # lapsed a day ago
    assert sample(m, "gate_evidence_expiry_timestamp_seconds", gate="coverage") == NOW - 3600
    doc = progress_status(w.config, w.state, NOW)
    assert [(b["gate"], b["tier"]) for b in doc["blockers"]] == [("signoff", "critical"), ("coverage", "important")]
    assert doc["awaiting_evidence"] == []


def test_a_push_from_another_branch_is_no_evidence_for_the_gate():
    w = World()
    w.pushes["coverage"] = PushRecord(NOW - 60, {"value": 0.95}, branch="feature/x")
    results = w.run("coverage")
    assert results["coverage"].awaiting and results["coverage"].evidence is None
    assert sample(w.metrics(), "gate_awaiting_evidence", gate="coverage") == 1


def test_a_result_that_says_nothing_of_evidence_keeps_the_series():
    """A result restored from the state file carries no evidence: the series keep what the gate was judged on."""
    w = World()
    w.history.atts["signoff"] = Attestation(1.0, NOW - 600, "alice")
    w.run("signoff")
    gate = w.config.gate("signoff")
    st = w.state.record(Result("signoff", "error", NOW + 1, 0.0, {}, "timed out after 5s"))
    w.expo.update(gate, st, w.config.uptime_window, NOW)
    m = w.metrics()
    assert sample(m, "gate_awaiting_evidence", gate="signoff") == 0
    assert sample(m, "gate_evidence_timestamp_seconds", gate="signoff") == NOW - 600
    assert sample(m, "gate_probe_error", gate="signoff") == 1


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is installed by scripts/system-deps.sh")
def test_promtool_check_metrics_is_clean_with_evidence_series():
    w = World()
    w.run()
    w.history.atts["signoff"] = Attestation(1.0, NOW - 600, "alice")
    w.run("signoff")
    body = w.expo.render()
    assert b"gate_evidence_expiry_timestamp_seconds{" in body
    proc = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b"", proc.stdout + proc.stderr
    # promtool reads the text format only; the OpenMetrics rendering of the same families parses strictly.
    families = {f.name: f for f in parse_openmetrics(w.expo.render(openmetrics=True).decode())}
    assert {name: families[name].type for name in EVIDENCE_METRICS} == dict.fromkeys(EVIDENCE_METRICS, "gauge")
    assert len(families["gate_awaiting_evidence"].samples) == 4
