"""/metrics content: every contract family, valid for promtool, OpenMetrics, removal on reload."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics

from exporter.config.model import parse_config
from exporter.exposition.gates import Exposition
from exporter.model import Result
from exporter.state.memory import State
from tests.conftest import parse_metrics, sample

CONFIG = """
tracker: demo
title: Demo "quoted" tracker
phases:
  - id: p1
    steps:
      - id: s1
        team: 'Team "A"\\backslash'
        gates:
          - id: g-pass
            tier: critical
            file: {path: /etc/hostname}
            expect: ">= 5m"
          - id: g-fail
            title: "Line\\nbreak"
            file: {path: /etc/hostname}
          - id: g-error
            tier: enhancement
            file: {path: /etc/hostname}
          - id: g-pending
            file: {path: /etc/hostname}
          - id: up
            uptime: {gate: g-pass}
            expect: "> 99.9%"
"""


def build(openmetrics: bool = False, config_text: str = CONFIG):
    config = parse_config(config_text)
    state = State()
    now = time.time()
    state.record(Result("g-pass", "pass", now, 0.01, {"value": 600.0, "age": 600.0, "size": 3.0}))
    state.record(Result("g-fail", "fail", now, 0.02, {}, "no such file"))
    state.record(Result("g-error", "error", now, 0.03, {}, "boom"))
    expo = Exposition(registry=None)
    expo.set_trackers([(config, state)])
    return config, state, expo


def test_every_contract_family_present_with_right_values():
    _, _, expo = build()
    m = parse_metrics(expo.render().decode())
    assert sample(m, "gate_passed", gate="g-pass", tier="critical", tracker="demo", phase="p1", step="s1") == 1
    assert sample(m, "gate_passed", gate="g-fail") == 0
    assert sample(m, "gate_passed", gate="g-error") == 0
    assert sample(m, "gate_passed", gate="g-pending") is None, "pending gates export no gate_passed"
    assert sample(m, "gate_probe_error", gate="g-error") == 1
    assert sample(m, "gate_probe_error", gate="g-fail") == 0
    assert sample(m, "gate_value", gate="g-pass") == 600
    assert sample(m, "gate_value", gate="g-fail") is None
    assert sample(m, "gate_threshold", gate="g-pass") == 300
    assert sample(m, "gate_evaluation_duration_seconds", gate="g-error") == pytest.approx(0.03)
    assert sample(m, "gate_interval_seconds", gate="g-pending") == 60
    assert sample(m, "gate_objective_ratio", gate="g-pass") == pytest.approx(0.999)
    assert sample(m, "gate_objective_ratio", gate="g-fail") is None
    assert sample(m, "gate_last_evaluation_timestamp_seconds", gate="g-pass") > 1e9
    assert sample(m, "gate_last_pass_timestamp_seconds", gate="g-pass") > 1e9
    assert sample(m, "gate_last_pass_timestamp_seconds", gate="g-fail") is None
    assert sample(m, "gate_evaluations_total", gate="g-fail", result="fail") == 1
    assert sample(m, "gate_evaluations_total", gate="g-fail", result="pass") == 0
    assert sample(m, "gate_uptime_ratio", gate="g-pass") == 1
    assert sample(m, "gate_uptime_ratio", gate="g-fail") == 0
    assert sample(m, "gate_info", gate="g-fail", title="Line\nbreak", team='Team "A"\\backslash') == 1
    assert sample(m, "step_completion_ratio", step="s1") == pytest.approx(1 / 5)
    assert sample(m, "phase_completion_ratio", phase="p1") == pytest.approx(1 / 5)
    assert sample(m, "tracker_completion_ratio", tracker="demo") == pytest.approx(1 / 5)
    assert sample(m, "tracker_gates", tier="important", status="pending") == 2
    assert sample(m, "tracker_gates", tier="critical", status="pass") == 1
    assert sample(m, "tracker_gates", tier="enhancement", status="error") == 1


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is installed by scripts/system-deps.sh")
def test_promtool_check_metrics_is_clean():
    _, _, expo = build()
    proc = subprocess.run(["promtool", "check", "metrics"], input=expo.render(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    assert proc.stdout.decode().strip() == "" and proc.stderr.decode().strip() == ""


def test_openmetrics_parses_and_ends_with_eof():
    _, _, expo = build()
    text = expo.render(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}
    assert families["gate_evaluations"].type == "counter"
    assert families["gate_passed"].type == "gauge"


def test_state_change_rerenders_only_that_gate():
    config, state, expo = build()
    g = config.gate("g-fail")
    st = state.record(Result("g-fail", "pass", time.time(), 0.01, {"value": 1.0}))
    expo.update(g, st, config.uptime_window)
    m = parse_metrics(expo.render().decode())
    assert sample(m, "gate_passed", gate="g-fail") == 1
    assert sample(m, "gate_evaluations_total", gate="g-fail", result="pass") == 1
    assert sample(m, "gate_uptime_ratio", gate="g-fail") == 0.5


def test_removed_gates_disappear():
    _, state, expo = build()
    smaller = CONFIG.split("          - id: g-fail")[0]
    c2 = parse_config(smaller)
    state.retain(g.id for g in c2.gates)
    expo.set_trackers([(c2, state)])
    text = expo.render().decode()
    assert 'gate="g-pass"' in text
    for gone in ("g-fail", "g-error", "g-pending", '"up"'):
        assert gone not in text
