"""Every metric the rules use is one a real exporter exposes: start `qualitygate serve`, scrape, compare."""

from __future__ import annotations

import contextlib
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for
from rules_support import PROMETHEUS_METRICS, metric_names, rules, template_metric_names

pytestmark = pytest.mark.slow

# Every kind of series the rules read: a passing gate observed by an uptime gate (objective), a
# failing gate with a threshold, an erring gate (command not found).
CONFIG = """
    tracker: rules-bundle
    title: Rules bundle metric coverage
    defaults:
      interval: 1s
      timeout: 1s
    phases:
      - id: core
        steps:
          - id: health
            gates:
              - id: always-passes
                tier: critical
                command: { argv: ["true"] }
              - id: uptime
                tier: important
                uptime: { gate: always-passes, window: 1h }
                expect: ">= 99%"
              - id: coverage
                tier: enhancement
                command: { shell: "echo 80%", value_regex: "([0-9.]+%)" }
                expect: ">= 85%"
              - id: broken-probe
                tier: important
                command: { argv: ["/nonexistent/qualitygate-test-command"] }
              - id: signoff
                tier: important
                manual: { max_age: 1h }
"""


def _used_metrics() -> set[str]:
    recorded = {r["record"] for r in rules("record")}
    used: set[str] = set()
    for rule in rules():
        used |= metric_names(rule["expr"])
        for template in rule.get("annotations", {}).values():
            used |= template_metric_names(template)
    return used - recorded - PROMETHEUS_METRICS


def _exposed(text: str) -> set[str]:
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_metric_the_rules_use_is_exposed_by_a_real_exporter(serve, write_config):
    served = serve(write_config(CONFIG))
    # An attested manual gate has every evidence series (awaiting 0, evidence time, expiry).
    attest = urllib.request.Request(f"{served.url}/api/gates/signoff/attestations", data=b'{"value": 1}',
                                    headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(attest, timeout=10) as answer:
        assert answer.status == 201
    used = _used_metrics()
    assert {"gate_passed", "gate_objective_ratio", "tracker_gates"} <= used

    def missing() -> set[str]:
        status, body = served.get("/metrics")
        assert status == 200, body
        return used - _exposed(body)

    # Gate series appear after each gate's first evaluation (1s interval): poll until all are there.
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not missing(), timeout=30, what="every metric the rules use on /metrics")
    assert not missing(), "the rules use metrics the exporter does not expose"
