"""Real Prometheus and Alertmanager processes on loopback ports, for the stack tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from conftest import ROOT, Served, free_port, http_get, wait_for

SHIPPED_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SHIPPED_ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "rules"


def have(*tools: str) -> list[str]:
    """The tools of `tools` that are missing from PATH."""
    return [tool for tool in tools if shutil.which(tool) is None]


def loopback_prometheus_config(targets: dict[str, str], interval: str = "15s") -> dict:
    """The shipped Prometheus config with compose service names mapped to loopback addresses.

    `targets` maps compose addresses (e.g. "exporter:9916") to loopback ones; scrape jobs whose
    targets are not all mapped are dropped (e.g. Grafana, which the tests do not run). Rule files
    point at the repository's rules/.
    """
    config = yaml.safe_load(SHIPPED_PROMETHEUS.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = interval
    config["global"]["evaluation_interval"] = interval
    config["rule_files"] = [str(RULES / Path(pattern).name) for pattern in config["rule_files"]]
    for manager in config["alerting"]["alertmanagers"]:
        for static in manager["static_configs"]:
            static["targets"] = [targets[t] for t in static["targets"]]
    jobs = []
    for job in config["scrape_configs"]:
        addresses = [t for static in job["static_configs"] for t in static["targets"]]
        if all(a in targets for a in addresses):
            for static in job["static_configs"]:
                static["targets"] = [targets[t] for t in static["targets"]]
            jobs.append(job)
    config["scrape_configs"] = jobs
    return config


def _start(args: list[str], port: int, log_path: Path, what: str) -> Served:
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    server = Served(proc, port, log_path)
    try:
        wait_for(
            lambda: proc.poll() is not None or http_get(f"{server.url}/-/ready", timeout=1)[0] == 200,
            timeout=60,
            what=f"{what} to become ready",
        )
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{server.log()}")
    except BaseException:
        server.stop()
        raise
    return server


def start_prometheus(config: dict, workdir: Path, port: int | None = None) -> Served:
    """Run a real `prometheus` with `config` on a (free) loopback port until it is ready."""
    port = port or free_port()
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    args = [
        "prometheus",
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    return _start(args, port, workdir / "prometheus.log", "prometheus")


def start_alertmanager(config_path: Path, workdir: Path, port: int | None = None) -> Served:
    """Run a real `prometheus-alertmanager` (clustering off) on a free loopback port until it is ready."""
    port = port or free_port()
    args = [
        "prometheus-alertmanager",
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    return _start(args, port, workdir / "alertmanager.log", "alertmanager")


def promql(base_url: str, expr: str, *, range_seconds: int | None = None, step: str = "5s") -> dict:
    """Run a PromQL query against the Prometheus HTTP API; the decoded JSON answer, errors included."""
    if range_seconds is None:
        path, params = "/api/v1/query", {"query": expr}
    else:
        end = _server_time(base_url)
        path, params = "/api/v1/query_range", {"query": expr, "start": end - range_seconds, "end": end, "step": step}
    url = f"{base_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def _server_time(base_url: str) -> float:
    answer = promql(base_url, "time()")
    return float(answer["data"]["result"][0])
