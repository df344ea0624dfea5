"""The rules bundle against the real tools: promtool check/test rules, amtool check-config and routes."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from rules_support import RULE_FILES, RULE_TESTS, SHIPPED_ALERTMANAGER, rules


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool with a deadline; output and exit code for the assertion message."""
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_the_bundle_and_its_tests_exist():
    assert [p.name for p in RULE_FILES] == ["qualitygate-alerts.yml", "qualitygate-recording.yml"]
    assert [p.name for p in RULE_TESTS] == ["qualitygate-alerts.test.yml", "qualitygate-recording.test.yml"]


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules_is_clean(path):
    result = run("promtool", "check", "rules", str(path))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS" in output and "WARNING" not in output.upper(), output


@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path):
    result = run("promtool", "test", "rules", str(path))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def _test_cases() -> list[dict]:
    return [case for path in RULE_TESTS for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]]


def test_every_alert_has_a_firing_and_a_silent_case_for_each_severity():
    firing: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for case in _test_cases():
        for check in case.get("alert_rule_test", []):
            if check["exp_alerts"]:
                firing |= {(check["alertname"], a["exp_labels"]["severity"]) for a in check["exp_alerts"]}
            else:
                silent.add(check["alertname"])
    alerts = rules("alert")
    assert {(r["alert"], r["labels"]["severity"]) for r in alerts} <= firing
    assert {r["alert"] for r in alerts} <= silent


def test_every_recording_rule_is_checked_by_a_promql_expr_test():
    checked = {check["expr"] for case in _test_cases() for check in case.get("promql_expr_test", [])}
    assert {r["record"] for r in rules("record")} <= checked


def test_the_unit_tests_order_every_group():
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        files = [path.parent / f for f in spec["rule_files"]]
        groups = [g["name"] for f in files for g in yaml.safe_load(f.read_text(encoding="utf-8"))["groups"]]
        if "group_eval_order" in spec:
            assert sorted(spec["group_eval_order"]) == sorted(groups)


def test_amtool_check_config():
    result = run("amtool", "check-config", str(SHIPPED_ALERTMANAGER))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert "3 inhibit rules" in result.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"alertname": "QualityGateCriticalFailing", "severity": "critical", "tier": "critical"}, "qualitygate-pager"),
    ({"alertname": "QualityGateErrorBudgetBurn", "severity": "critical"}, "qualitygate-pager"),
    ({"alertname": "QualityGateExporterDown", "severity": "critical"}, "qualitygate-pager"),
    ({"alertname": "QualityGateImportantFailing", "severity": "warning", "tier": "important"}, "qualitygate-ticket"),
    ({"alertname": "QualityGateProbeError", "severity": "warning"}, "qualitygate-ticket"),
    ({"alertname": "QualityGateEnhancementFailing", "severity": "info", "tier": "enhancement"}, "null"),
    # Someone else's alert in a shared Alertmanager is not ours to page for.
    ({"alertname": "NodeDown", "severity": "critical"}, "null"),
], ids=lambda v: v if isinstance(v, str) else v["alertname"] + "/" + v["severity"])
def test_amtool_routes_each_severity(labels, receiver):
    result = run("amtool", "config", "routes", "test", f"--config.file={SHIPPED_ALERTMANAGER}",
                 f"--verify.receivers={receiver}", "tracker=tools-automation", "phase=core-infrastructure",
                 *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver
