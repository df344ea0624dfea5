"""docker-compose.yml: valid for Debian's docker-compose, every mount exists, provisioning lines up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from stack_support import have

pytestmark = pytest.mark.skipif(bool(have("docker-compose")), reason="docker-compose is not installed")

SERVICES = {"exporter", "prometheus", "alertmanager", "grafana"}


def run_from_root(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in the repository root, output captured, for 60 s at most."""
    return subprocess.run(argv, cwd=ROOT, check=False, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose file as docker-compose resolves it (absolute mount sources, long syntax)."""
    result = run_from_root("docker-compose", "-f", "docker-compose.yml", "config")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    for service in resolved["services"].values():
        service["volumes"] = [_volume(v) for v in service.get("volumes", [])]
    return resolved


def _volume(entry: str | dict) -> dict:
    """docker-compose 1.29 prints `SOURCE:TARGET:MODE`; later versions print the long syntax."""
    if isinstance(entry, dict):
        return {**entry, "read_only": entry.get("read_only", False)}
    source, target, mode = entry.split(":")
    kind = "bind" if source.startswith("/") else "volume"
    return {"type": kind, "source": source, "target": target, "read_only": mode == "ro"}


def test_compose_config_is_valid():
    result = run_from_root("docker-compose", "-f", "docker-compose.yml", "config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_the_four_services_have_healthchecks(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert any("/-/healthy" in part or "/api/health" in part for part in check["test"]), name
        assert service["restart"] == "unless-stopped", name


def test_every_mounted_file_or_directory_exists(compose):
    binds = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                binds.append((name, volume))
                assert Path(volume["source"]).exists(), f"{name} mounts {volume['source']}, which does not exist"
                assert volume.get("read_only"), f"{name}: mount {volume['source']} read-only"
    assert {Path(v["source"]).relative_to(ROOT).as_posix() for _, v in binds} == {
        "examples/stack-tracker.yml",
        "deploy/prometheus/prometheus.yml",
        "rules",
        "deploy/alertmanager/alertmanager.yml",
        "deploy/grafana/provisioning",
        "dashboards",
    }
    build = compose["services"]["exporter"]["build"]
    assert (Path(build["context"]) / build.get("dockerfile", "Dockerfile")).is_file()


def test_state_lives_in_named_volumes(compose):
    declared = set(compose["volumes"])
    used = {
        (name, volume["source"], volume["target"])
        for name, service in compose["services"].items()
        for volume in service.get("volumes", [])
        if volume["type"] == "volume"
    }
    assert {(n, t) for n, _, t in used} == {
        ("exporter", "/var/lib/qualitygate"),
        ("prometheus", "/prometheus"),
        ("alertmanager", "/alertmanager"),
        ("grafana", "/var/lib/grafana"),
    }
    assert {source for _, source, _ in used} == declared


def test_services_read_their_configs_where_they_are_mounted(compose):
    services = compose["services"]

    def target_of(service: str, relative: str) -> str:
        return next(v["target"] for v in services[service]["volumes"] if v.get("source") == str(ROOT / relative))

    exporter_args = services["exporter"]["command"]
    assert f"--config.file={target_of('exporter', 'examples/stack-tracker.yml')}" in exporter_args
    assert "--storage.path=/var/lib/qualitygate/qualitygate.db" in exporter_args
    assert (
        f"--config.file={target_of('prometheus', 'deploy/prometheus/prometheus.yml')}"
        in services["prometheus"]["command"]
    )
    alertmanager = target_of("alertmanager", "deploy/alertmanager/alertmanager.yml")
    assert f"--config.file={alertmanager}" in services["alertmanager"]["command"]

    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    rules_dir = target_of("prometheus", "rules")
    assert prometheus["rule_files"] == [f"{rules_dir}/*.yml"]


def test_grafana_is_anonymous_viewer_and_provisions_the_dashboards(compose):
    grafana = compose["services"]["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {v["source"]: v["target"] for v in grafana["volumes"] if v["type"] == "bind"}
    provisioning = mounts[str(ROOT / "deploy/grafana/provisioning")]
    assert provisioning == "/etc/grafana/provisioning"

    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/qualitygate.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == mounts[str(ROOT / "dashboards")]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(entry["options"]["path"] + "/")
    assert (ROOT / "dashboards" / Path(home).name).is_file()

    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    # The dashboards' datasource variable must be able to pick this data source.
    overview = json.loads((ROOT / "dashboards/overview.json").read_text())
    variable = next(v for v in overview["templating"]["list"] if v["name"] == "datasource")
    assert variable["query"] == source["type"]


def test_stack_tracker_probes_the_stack_and_is_valid(compose):
    result = run_from_root(sys.executable, "-m", "exporter", "validate", "examples/stack-tracker.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tracker = yaml.safe_load((ROOT / "examples/stack-tracker.yml").read_text())
    text = (ROOT / "examples/stack-tracker.yml").read_text()
    for service, port in (("prometheus", 9090), ("alertmanager", 9093), ("grafana", 3000)):
        assert service in compose["services"]
        assert f"http://{service}:{port}/" in text, f"no gate probes {service}"
    assert tracker["prometheus"]["url"] == "http://prometheus:9090"
    queries = [g["promql"]["query"] for p in tracker["phases"] for s in p["steps"] for g in s["gates"] if "promql" in g]
    assert any("up" in q for q in queries)
    assert any("prometheus_rule_evaluation_failures_total" in q for q in queries)
    assert "http://localhost:9916/-/healthy" in text
