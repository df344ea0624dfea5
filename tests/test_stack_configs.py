"""The stack's Prometheus and Alertmanager configs pass the real promtool and amtool."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from stack_support import RULES, SHIPPED_ALERTMANAGER, SHIPPED_PROMETHEUS, have, loopback_prometheus_config

COMPOSE_TARGETS = {
    "exporter:9916": "127.0.0.1:9916",
    "localhost:9090": "127.0.0.1:9090",
    "alertmanager:9093": "127.0.0.1:9093",
    "grafana:3000": "127.0.0.1:3000",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a tool, bounded in time."""
    return subprocess.run(list(args), check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(bool(have("promtool")), reason="promtool is not installed")
def test_shipped_prometheus_config_passes_promtool(tmp_path):
    config = loopback_prometheus_config(COMPOSE_TARGETS)
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        "qualitygate",
        "prometheus",
        "alertmanager",
        "grafana",
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = run("promtool", "check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted(RULES.glob("*.yml"))
    assert rule_files, "rules/ holds no rule files"
    assert f"SUCCESS: {len(rule_files)} rule files found" in result.stdout + result.stderr
    for rule_file in rule_files:
        assert f"Checking {rule_file}" in result.stdout


def test_shipped_prometheus_config_uses_compose_names_and_the_rules_job():
    config = yaml.safe_load(SHIPPED_PROMETHEUS.read_text())
    targets = {
        job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]] for job in config["scrape_configs"]
    }
    assert targets == {
        "qualitygate": ["exporter:9916"],
        "prometheus": ["localhost:9090"],
        "alertmanager": ["alertmanager:9093"],
        "grafana": ["grafana:3000"],
    }
    alert_targets = [t for m in config["alerting"]["alertmanagers"] for s in m["static_configs"] for t in s["targets"]]
    assert alert_targets == ["alertmanager:9093"]
    rules_text = "".join(p.read_text() for p in RULES.glob("*.yml"))
    assert 'job="qualitygate"' in rules_text, "the rules' documented default job name changed: update the scrape job"


@pytest.mark.skipif(bool(have("amtool")), reason="amtool is not installed")
def test_shipped_alertmanager_config_passes_amtool():
    assert SHIPPED_ALERTMANAGER.is_file()
    result = run("amtool", "check-config", str(SHIPPED_ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
