"""End to end: a real `qualitygate serve` on a config with every probe kind, plus `check` and `validate`."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, parse_metrics, sample, wait_for
from exporter.exposition.gates import CONTRACT_METRICS
from stack_support import promql, start_prometheus

pytestmark = pytest.mark.skipif(not shutil.which("prometheus") or not shutil.which("promtool"),
                                reason="prometheus and promtool are installed by scripts/system-deps.sh")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body, status = b'{"status": "ok", "ratio": 0.97}', 200
        else:
            body, status = b"not found", 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def target():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path):
    workdir = tmp_path / "prom"
    workdir.mkdir()
    from conftest import free_port
    port = free_port()
    config = {"global": {"scrape_interval": "1s"},
              "scrape_configs": [{"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}
    server = start_prometheus(config, workdir, port)
    yield server
    server.stop()


def write_config(tmp_path: Path, target: int, prom_url: str) -> Path:
    data = tmp_path / "data"
    # Plain copies get a fresh mtime (copytree would keep the checkout's), so "age < 1h" holds.
    shutil.copytree(ROOT / "examples" / "data", data, copy_function=shutil.copy)
    (data / "metrics.json").write_text(json.dumps({"p95_ms": 212}))
    config = tmp_path / "gates.yml"
    config.write_text(f"""
tracker: e2e
title: Every probe kind
defaults: {{interval: 1s, timeout: 900ms}}
prometheus: {{url: "{prom_url}"}}
phases:
  - id: live
    steps:
      - id: services
        team: Team A
        gates:
          - id: http-health
            tier: critical
            http: {{url: "http://127.0.0.1:{target}/health", json_path: "$.ratio"}}
            expect: [">= 95%", "status == 200"]
          - id: http-missing
            http: {{url: "http://127.0.0.1:{target}/nope"}}
          - id: tcp-open
            tcp: {{address: "127.0.0.1:{target}"}}
          - id: prom-up
            promql: {{query: 'up{{job="prometheus"}}'}}
            expect: "== 1"
          - id: prom-empty
            tier: enhancement
            promql: {{query: 'up{{job="nonexistent"}}'}}
            expect: "== 1"
          - id: health-uptime
            uptime: {{gate: http-health, window: 1h}}
            expect: ">= 99%"
  - id: reports
    steps:
      - id: quality
        gates:
          - id: cmd-value
            command: {{argv: ["{sys.executable}", "-c", "print('coverage 91%')"], value_regex: 'coverage (\\d+%)'}}
            expect: ">= 90%"
          - id: cmd-exit
            command: {{shell: "exit 3"}}
          - id: coverage-line
            tier: critical
            coverage: {{path: data/coverage.xml}}
            expect: ">= 85%"
          - id: junit-all
            junit: {{path: "data/junit/*.xml"}}
          - id: json-p95
            json_file: {{path: data/metrics.json, json_path: "$.p95_ms"}}
            expect: "< 500"
          - id: file-fresh
            file: {{path: data/flaky.json}}
            expect: "age < 1h"
          - id: file-missing-report
            coverage: {{path: data/absent.xml}}
            expect: ">= 50%"
          - id: audit
            manual: {{max_age: 30d}}
""")
    return config


EXPECTED = {
    "http-health": "pass", "http-missing": "fail", "tcp-open": "pass", "prom-up": "pass", "prom-empty": "error",
    "health-uptime": "pass", "cmd-value": "pass", "cmd-exit": "fail", "coverage-line": "fail", "junit-all": "pass",
    "json-p95": "pass", "file-fresh": "pass", "file-missing-report": "error", "audit": "fail",
}


def test_serve_every_probe_kind(tmp_path: Path, target: int, prometheus, serve):
    config = write_config(tmp_path, target, prometheus.url)
    # Prometheus needs a scrape or two before `up` has a sample.
    def up_has_a_sample() -> bool:
        return bool(promql(prometheus.url, "up")["data"]["result"])

    wait_for(up_has_a_sample, timeout=30, what="prometheus to scrape itself")
    s = serve(config)

    last: dict[str, str] = {}

    def statuses():
        doc = json.loads(s.get("/api/progress/status")[1])
        last.clear()
        last.update({g["id"]: f'{g["status"]}: {g["message"]}' for g in doc["gates"]})
        got = {g["id"]: g["status"] for g in doc["gates"]}
        return got if got == EXPECTED else None

    try:
        wait_for(statuses, timeout=30, what="every gate to reach its expected status")
    except AssertionError:
        wrong = {k: v for k, v in last.items() if not v.startswith(EXPECTED[k] + ":")}
        raise AssertionError(f"gates not as expected: {wrong}") from None
    status, text = s.get("/metrics")
    assert status == 200
    m = parse_metrics(text)
    for gate, outcome in EXPECTED.items():
        assert sample(m, "gate_passed", gate=gate) == (1 if outcome == "pass" else 0), gate
        assert sample(m, "gate_probe_error", gate=gate) == (1 if outcome == "error" else 0), gate
    assert sample(m, "gate_value", gate="http-health") == pytest.approx(0.97)
    assert sample(m, "gate_value", gate="cmd-value") == pytest.approx(0.91)
    assert sample(m, "gate_value", gate="coverage-line") == pytest.approx(0.83)
    assert sample(m, "gate_value", gate="json-p95") == 212
    assert sample(m, "gate_value", gate="prom-up") == 1
    assert sample(m, "gate_threshold", gate="http-health") == pytest.approx(0.95)
    assert sample(m, "gate_objective_ratio", gate="http-health") == pytest.approx(0.99)
    assert sample(m, "gate_info", gate="http-health", title="http-health", team="Team A") == 1
    assert sample(m, "tracker_gates", tracker="e2e", tier="critical", status="fail") == 1
    # The evidence times exist once a gate has evidence; the one manual gate here never had any.
    unevidenced = {"gate_evidence_timestamp_seconds", "gate_evidence_expiry_timestamp_seconds"}
    assert set(CONTRACT_METRICS) - unevidenced <= {name for name, _ in m}, "every metric the contract names is exposed"
    assert sample(m, "gate_awaiting_evidence", gate="audit") == 1

    # The real promtool finds nothing to complain about in the real output.
    proc = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b"", proc.stdout + proc.stderr

    doc = json.loads(s.get("/api/progress/status")[1])
    by = {g["id"]: g for g in doc["gates"]}
    assert by["prom-empty"]["message"] == "query returned no samples"
    assert by["cmd-exit"]["message"].startswith("exit code 3")
    assert {b["gate"] for b in doc["blockers"]} == {"http-missing", "cmd-exit", "coverage-line",
                                                    "file-missing-report"}
    assert [a["gate"] for a in doc["awaiting_evidence"]] == ["audit"], "never attested: awaiting, not a blocker"
    assert doc["quality_gates"]["critical"]["total"] == 2


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))


def test_check_and_validate_exit_codes(tmp_path: Path, target: int, prometheus):
    config = write_config(tmp_path, target, prometheus.url)
    assert run_cli("validate", str(config)).returncode == 0
    ok = run_cli("check", "--config.file", str(config), "--gate", "http-health", "--gate", "junit-all",
                 "--gate", "cmd-value")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("PASS  critical    http-health")
    assert "value 97 % is at least 95 %; status 200 is 200" in lines[0]  # the one formatter's pass form
    assert lines[-1] == "e2e: 3/3 gates passed, 0 failed, 0 errors"
    bad = run_cli("check", "--config.file", str(config))
    assert bad.returncode == 1
    assert "FAIL  critical    coverage-line" in bad.stdout
    # default tiers: critical and important (the enhancement prom-empty gate is not checked)
    assert "prom-empty" not in bad.stdout
    assert run_cli("check", "--config.file", str(config), "--tier", "urgent").returncode == 2
    assert run_cli("check", "--config.file", str(config), "--gate", "nope").returncode == 2
