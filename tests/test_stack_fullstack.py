"""Full stack on loopback: a real exporter, prometheus (shipped config and rules) and alertmanager.

Every query of every dashboard panel, with its variables substituted, runs against the real
Prometheus HTTP API: no query may error, and every one must return data for this tracker. This
proves the dashboards show series that really exist, not names that merely look right.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, free_port, start_serve, wait_for
from stack_support import (
    SHIPPED_ALERTMANAGER,
    have,
    loopback_prometheus_config,
    promql,
    start_alertmanager,
    start_prometheus,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(have("prometheus", "prometheus-alertmanager")), reason="prometheus or alertmanager missing"
    ),
]

TRACKER = "fullstack"
FLIP_GATE = "release-marker"
DASHBOARDS = ("overview.json", "gate-detail.json", "exporter.json")

# Panel targets that may legitimately come back empty with this tracker, with the reason.
# Every other panel must show data here.
NO_DATA_EXPECTED: dict[tuple[str, str, str], str] = {
    ("overview.json", "Gates", ref): "no probe kind's value is in bytes yet (gate_info unit=\"bytes\"); "
    "tests/test_dashboards_promql.py covers these columns"
    for ref in ("G", "H")
}

TRACKER_YAML = """\
tracker: {tracker}
title: Full-stack dashboard test
uptime_window: 1d
defaults: {{interval: 1s, timeout: 1s, tier: important}}
prometheus: {{url: "http://127.0.0.1:{prometheus}"}}
phases:
  - id: services
    title: Services
    steps:
      - id: health
        title: Health endpoints
        team: Observability
        gates:
          - id: prometheus-healthy
            title: Prometheus health endpoint
            tier: critical
            http: {{url: "http://127.0.0.1:{prometheus}/-/healthy"}}
            expect: "response_time < 1s"
          - id: alertmanager-healthy
            title: Alertmanager health endpoint
            tier: critical
            http: {{url: "http://127.0.0.1:{alertmanager}/-/healthy"}}
            expect: "response_time < 1s"
          - id: prometheus-ready
            title: Prometheus ready (a threshold in seconds)
            http: {{url: "http://127.0.0.1:{prometheus}/-/ready"}}
            expect: "value < 1s"
      - id: monitoring
        title: Prometheus evaluates
        gates:
          - id: scrape-success
            title: Prometheus scrapes the exporter
            promql: {{query: 'min(up{{job="qualitygate"}})'}}
            expect: "== 1"
          - id: targets-up
            title: Most scrape targets up (a threshold in percent)
            promql: {{query: "avg(up)"}}
            expect: ">= 50%"
          - id: rule-evaluation-failures
            title: No rule evaluation failures
            promql: {{query: "sum(prometheus_rule_evaluation_failures_total)"}}
            expect: "== 0"
  - id: release
    title: Release
    steps:
      - id: checks
        title: Release checks
        team: Release
        gates:
          - id: {flip}
            title: Release marker present
            tier: critical
            command: {{argv: [test, -e, "{marker}"]}}
            expect: "== 0"
          - id: never-exported
            title: A metric nobody exports (probe error)
            promql: {{query: "qualitygate_fullstack_metric_that_does_not_exist"}}
            expect: "> 0"
          - id: polish
            title: Always true
            tier: enhancement
            command: {{argv: ["true"]}}
          - id: {signoff}
            title: Release sign-off (attested, for the Evidence row)
            tier: enhancement
            manual: {{max_age: 3d}}
"""
SIGNOFF_GATE = "release-signoff"


@dataclass
class Stack:
    """The running stack and what the dashboards' variables resolve to."""

    prometheus_url: str
    exporter_instance: str

    def variables(self) -> dict[str, str]:
        """Dashboard variables as Grafana would substitute them (All = .* for phase and tier)."""
        return {
            "datasource": "prometheus",
            "tracker": TRACKER,
            "phase": ".*",
            "tier": ".*",
            "gate": FLIP_GATE,
            # Grafana regex-escapes multi-value variables, then escapes the backslashes for PromQL.
            "instance": re.escape(self.exporter_instance).replace("\\", "\\\\"),
            "__rate_interval": "1m",
            "__interval": "15s",
            "__range": "1h",
        }

    def query(self, expr: str, *, instant: bool = True) -> dict:
        """Run `expr` on the stack's Prometheus, instant or over the last minute."""
        return promql(self.prometheus_url, expr, range_seconds=None if instant else 60)

    def value(self, expr: str) -> list[tuple[dict, float]]:
        """(labels, value) of an instant query that must succeed."""
        answer = self.query(expr)
        assert answer["status"] == "success", answer
        return [(r["metric"], float(r["value"][1])) for r in answer["data"]["result"]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace $name and ${name} as Grafana does; an unknown variable is an error."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in variables, f"unknown dashboard variable ${name} in {expr!r}"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def panel_targets() -> list[tuple[str, str, dict]]:
    """(dashboard file, panel title, target) for every target of every dashboard."""
    found = []
    for name in DASHBOARDS:
        board = json.loads((ROOT / "dashboards" / name).read_text())
        for panel in board["panels"]:
            found += [(name, panel["title"], target) for target in panel.get("targets", [])]  # rows have none
    return found


def variable_queries() -> list[tuple[str, dict]]:
    """(dashboard file, variable) for every query variable."""
    found = []
    for name in DASHBOARDS:
        board = json.loads((ROOT / "dashboards" / name).read_text())
        found += [(name, v) for v in board["templating"]["list"] if v["type"] == "query"]
    return found


TARGETS = panel_targets()
VARIABLES = variable_queries()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    """Alertmanager, then the exporter, then Prometheus; wait until every panel can have data."""
    workdir = tmp_path_factory.mktemp("fullstack")
    marker = workdir / "release.marker"
    marker.write_text("present\n")
    started = []
    try:
        alertmanager = start_alertmanager(SHIPPED_ALERTMANAGER, workdir)
        started.append(alertmanager)
        prometheus_port = free_port()
        config = workdir / "tracker.yml"
        config.write_text(
            TRACKER_YAML.format(
                tracker=TRACKER,
                prometheus=prometheus_port,
                alertmanager=alertmanager.port,
                flip=FLIP_GATE,
                signoff=SIGNOFF_GATE,
                marker=marker,
            )
        )
        exporter = start_serve(config, workdir)
        started.append(exporter)
        _attest(exporter.port, SIGNOFF_GATE)
        targets = {
            "exporter:9916": f"127.0.0.1:{exporter.port}",
            "localhost:9090": f"127.0.0.1:{prometheus_port}",
            "alertmanager:9093": f"127.0.0.1:{alertmanager.port}",
        }
        prometheus = start_prometheus(loopback_prometheus_config(targets, interval="1s"), workdir, port=prometheus_port)
        started.append(prometheus)
        stack = Stack(prometheus.url, targets["exporter:9916"])
        _wait_for_history(stack, marker)
        yield stack
    finally:
        for process in reversed(started):
            process.stop()


def _attest(port: int, gate: str) -> None:
    """Attest a manual gate (loopback may without basic auth), so that evidence series exist."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/gates/{gate}/attestations?tracker={TRACKER}",
        data=json.dumps({"value": True, "by": "fullstack test"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def _wait_for_history(stack: Stack, marker: Path) -> None:
    """Let the release gate pass, then fail, so that history, last pass and blockers are real."""
    flip = f'tracker="{TRACKER}", gate="{FLIP_GATE}"'

    def until_seen(expr: str, what: str, timeout: float = 60) -> None:
        """Wait until Prometheus answers `expr` with at least one series."""

        def seen() -> bool:
            answer = stack.query(expr)
            return answer["status"] == "success" and bool(answer["data"]["result"])

        wait_for(seen, timeout=timeout, interval=0.5, what=what)

    until_seen(f"gate_passed{{{flip}}} == 1", "the release gate passing in Prometheus", timeout=90)
    until_seen(f"gate_last_pass_timestamp_seconds{{{flip}}}", "its last pass time")
    marker.unlink()
    until_seen(f"gate_passed{{{flip}}} == 0", "the release gate failing")
    # The PromQL gates error until Prometheus answers and has scraped: wait for them to settle.
    healthy = f'tracker="{TRACKER}", gate!~"{FLIP_GATE}|never-exported"'
    until_seen(f"count(gate_passed{{{healthy}}} == 1) == count(gate_info{{{healthy}}})", "every other gate passing",
               timeout=90)
    until_seen(f'gate_probe_error{{tracker="{TRACKER}", gate="never-exported"}} == 1', "a probe error")
    # Rates need two samples of every series inside the window.
    until_seen(f'count(rate(gate_evaluations_total{{tracker="{TRACKER}"}}[1m]) > 0) >= 7', "evaluation rates")
    until_seen("rate(process_cpu_seconds_total[1m])", "a CPU rate")


@pytest.mark.parametrize(
    ("dashboard", "panel", "target"), TARGETS, ids=[f"{d}:{p}:{t['refId']}" for d, p, t in TARGETS]
)
def test_panel_query_returns_data(stack, dashboard, panel, target):
    expr = substitute(target["expr"], stack.variables())
    answer = stack.query(expr, instant=target.get("instant", False))
    assert answer["status"] == "success", f"{expr!r}: {answer.get('error')}"
    assert not answer.get("warnings"), answer["warnings"]
    reason = NO_DATA_EXPECTED.get((dashboard, panel, target["refId"]))
    if reason is None:
        assert answer["data"]["result"], f"{dashboard} / {panel} [{target['refId']}] shows no data: {expr}"


@pytest.mark.parametrize(("dashboard", "variable"), VARIABLES, ids=[f"{d}:{v['name']}" for d, v in VARIABLES])
def test_variable_query_lists_the_stacks_values(stack, dashboard, variable):
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
    assert match, variable["query"]
    selector = substitute(match.group(1), stack.variables())
    label = match.group(2)
    values = {labels[label] for labels, _ in stack.value(f"group by ({label}) ({selector})")}
    wanted = {
        "tracker": {TRACKER},
        "phase": {"services", "release"},
        "tier": {"critical", "important", "enhancement"},
        "gate": {FLIP_GATE, "polish", "never-exported", "scrape-success"},
        "instance": {stack.exporter_instance},
    }[label]
    assert wanted <= values, (label, values)


def test_dashboards_show_the_truth(stack):
    """Spot values: the encodings and counts on the overview match what the tracker really does."""
    overview = {p: t for d, p, t in TARGETS if d == "overview.json" and t["refId"] == "A"}
    variables = stack.variables()

    def panel_value(title: str) -> float:
        ((_, value),) = stack.value(substitute(overview[title]["expr"], variables))
        return value

    assert panel_value("Failing critical gates") == 1
    assert panel_value("Probe errors") == 1
    completion = panel_value("Overall completion")
    assert 0 < completion < 1

    status_expr = next(t for d, p, t in TARGETS if d == "overview.json" and p == "Gates" and t["refId"] == "B")["expr"]
    status = {labels["gate"]: value for labels, value in stack.value(substitute(status_expr, variables))}
    assert status[FLIP_GATE] == 0  # FAIL
    assert status["never-exported"] == 2  # ERROR
    assert status["polish"] == 1  # PASS

    blockers = next(t for d, p, t in TARGETS if d == "overview.json" and p == "Blockers" and t["refId"] == "A")["expr"]
    blocking = {labels["gate"] for labels, _ in stack.value(substitute(blockers, variables))}
    assert blocking == {FLIP_GATE, "never-exported"}


def test_shipped_rules_load_and_evaluate_without_failures(stack):
    rules = stack.value("sum(prometheus_rule_group_rules)")
    assert rules and rules[0][1] > 0
    wait_for(
        lambda: stack.value("sum(prometheus_rule_evaluations_total)")[0][1] > 0, timeout=30, what="rule evaluations"
    )
    assert stack.value("sum(prometheus_rule_evaluation_failures_total)")[0][1] == 0
    assert stack.value("max(prometheus_notifications_alertmanagers_discovered)")[0][1] == 1
