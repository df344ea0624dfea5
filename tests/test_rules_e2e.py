"""End to end: exporter -> Prometheus with the shipped rules -> Alertmanager -> the pager webhook."""

from __future__ import annotations

import pytest

from conftest import TESTDATA
from rules_support import alertmanager_test_config, shortened_rules, start_webhook_receiver
from stack_support import promql, start_alertmanager, start_prometheus

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver():
    """The local webhook receiver the test Alertmanager notifies."""
    server = start_webhook_receiver()
    yield server
    server.stop()


@pytest.fixture
def alertmanager(tmp_path, receiver):
    """A real Alertmanager running the shipped routing, its webhooks pointed at `receiver`."""
    server = start_alertmanager(alertmanager_test_config(receiver.url, tmp_path / "alertmanager.yml"), tmp_path)
    yield server
    server.stop()


def test_a_failing_critical_gate_pages_through_prometheus_and_alertmanager(tmp_path, serve, receiver, alertmanager):
    exporter = serve(TESTDATA / "e2e-rules.yml")
    rule_files = shortened_rules(tmp_path / "rules")
    prometheus = start_prometheus({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]},
        "scrape_configs": [{"job_name": "qualitygate",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}],
    }, tmp_path)
    try:
        alert = receiver.wait_for_alert("/qualitygate-pager", timeout=60, alertname="QualityGateCriticalFailing")
        assert alert["status"] == "firing"
        assert alert["labels"] == {
            "alertname": "QualityGateCriticalFailing",
            "severity": "critical",
            "job": "qualitygate",
            "instance": f"127.0.0.1:{exporter.port}",
            "tracker": "rules-e2e",
            "phase": "release",
            "step": "smoke",
            "gate": "always-fails",
            "tier": "critical",
        }
        # The description's title and value were looked up by the real Prometheus (gate_info, gate_value:
        # `false` exits 1); it never passed, and no --web.external-url was given, so there is no link.
        assert alert["annotations"] == {
            "summary": "A critical quality gate is failing.",
            "description": 'Gate "A smoke test that exits 1" (always-fails, critical) of tracker rules-e2e (phase '
                           'release, step smoke) does not meet its expectation: measured 1. It has not passed '
                           'since it was first evaluated.',
            "runbook_url": "https://github.com/qualitygate/qualitygate-exporter/blob/main/docs/runbooks.md"
                           "#qualitygatecriticalfailing",
        }
        # The passing gate raises nothing, and the critical alert went to the pager only.
        answer = promql(prometheus.url, 'ALERTS{gate="always-passes"}')
        assert answer["status"] == "success" and answer["data"]["result"] == []
        paged = [a["labels"]["gate"] for a in receiver.alerts("/qualitygate-pager")
                 if a["labels"]["alertname"] == "QualityGateCriticalFailing"]
        assert set(paged) == {"always-fails"}
        assert not [a for a in receiver.alerts("/qualitygate-ticket")
                    if a["labels"]["alertname"] == "QualityGateCriticalFailing"]
    finally:
        prometheus.stop()
