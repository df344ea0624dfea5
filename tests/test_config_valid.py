"""Loading valid configs: every key, defaults, durations, expect, ${ENV}, relative paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config.durations import format_duration, parse_duration
from exporter.config.expect import parse_condition
from exporter.config.fields import ConfigError
from exporter.config.model import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text,seconds", [
    ("500ms", 0.5), ("15s", 15), ("5m", 300), ("1h30m", 5400), ("30d", 2592000), ("1w", 604800),
    ("1y", 31536000), ("2h15m30s250ms", 8130.25), ("0", 0),
])
def test_durations(text: str, seconds: float):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1 minute", "15", "5x", "1m1h", "-5s", "1.5h", "ms"])
def test_bad_durations(text: str):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("seconds,text", [(0.5, "500ms"), (90, "1m30s"), (2592000, "4w2d"), (15, "15s")])
def test_format_duration_round_trips(seconds: float, text: str):
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize("text,measurement,op,threshold", [
    (">= 85%", "value", ">=", 0.85),
    ("response_time < 500ms", "response_time", "<", 0.5),
    ("> 99.9%", "value", ">", 0.999),
    ("status == 200", "status", "==", 200),
    ("== true", "value", "==", 1),
    ("!= false", "value", "!=", 0),
    ("age<1d", "age", "<", 86400),
    ("<= 1.5e3", "value", "<=", 1500),
    ("duration < 10m", "duration", "<", 600),
    ("> 2h", "value", ">", 7200),
    ("<= 3s", "value", "<=", 3),
])
def test_expect_parsing(text: str, measurement: str, op: str, threshold: float):
    c = parse_condition(text)
    assert (c.measurement, c.op) == (measurement, op)
    assert c.threshold == pytest.approx(threshold)


def test_expect_holds_per_operator():
    assert parse_condition(">= 85%").holds(0.85)
    assert not parse_condition("> 85%").holds(0.85)
    assert parse_condition("< 500ms").holds(0.4999)
    assert not parse_condition("< 500ms").holds(0.5)
    assert parse_condition("!= 0").holds(1)
    assert parse_condition("== true").holds(1.0)


@pytest.mark.parametrize("text", ["", "85%", "=> 5", ">= 5 %%", "value >=", ">= true%", ">= nan", "VALUE > 1"])
def test_expect_rejects(text: str):
    with pytest.raises(ValueError):
        parse_condition(text)


BASE = """
tracker: tools-automation
title: Plan
uptime_window: 7d
defaults: {interval: 20s, timeout: 4s, tier: critical}
prometheus: {url: "http://127.0.0.1:9090"}
phases:
  - id: p1
    title: Phase one
    steps:
      - id: s1
        title: Step one
        team: Team A
        gates:
          - id: g1
            file: {path: reports/out.txt}
          - id: g2
            title: Second
            tier: enhancement
            interval: 1m
            timeout: 1m
            file: {path: /abs/file}
            expect: ["age < 1h", "size > 0"]
"""


def test_defaults_and_overrides(tmp_path: Path):
    path = tmp_path / "sub" / "gates.yml"
    path.parent.mkdir()
    path.write_text(BASE)
    c = load_config(str(path))
    assert (c.tracker, c.title, c.uptime_window, c.prometheus_url) == ("tools-automation", "Plan", 7 * 86400,
                                                                       "http://127.0.0.1:9090")
    g1, g2 = c.gates
    assert (g1.tier, g1.interval, g1.timeout, g1.title, g1.team) == ("critical", 20, 4, "g1", "Team A")
    assert (g2.tier, g2.interval, g2.timeout, g2.title) == ("enhancement", 60, 60, "Second")
    # Relative paths are relative to the config file's folder, as in Prometheus.
    assert g1.spec.path == str(tmp_path / "sub" / "reports" / "out.txt")
    assert g2.spec.path == "/abs/file"
    assert [x.text for x in g2.expect] == ["age < 1h", "size > 0"]
    assert g2.threshold is None and g1.threshold is None
    assert c.phases[0].title == "Phase one" and c.steps[0].title == "Step one"
    assert c.gate("g2") is g2 and c.gate("nope") is None


def test_env_expansion_with_default():
    text = BASE.replace("http://127.0.0.1:9090", "${QG_PROM:-http://127.0.0.1:9999}").replace(
        "reports/out.txt", '"/data/${QG_DIR}/out.txt"')
    c = parse_config(text, env={"QG_DIR": "nightly"})
    assert c.prometheus_url == "http://127.0.0.1:9999"
    assert c.gates[0].spec.path == "/data/nightly/out.txt"
    c = parse_config(text, env={"QG_DIR": "x", "QG_PROM": "https://prom.example:9090"})
    assert c.prometheus_url == "https://prom.example:9090"


def test_gate_threshold_is_first_value_condition():
    c = parse_config(BASE.replace('expect: ["age < 1h", "size > 0"]', 'expect: ["size > 0", ">= 5m", "< 1h"]'))
    assert c.gates[1].threshold == 300


def test_objectives_from_uptime_gates():
    text = BASE + """
          - id: up
            uptime: {gate: g1, window: 1d}
            expect: ">= 99.5%"
"""
    c = parse_config(text)
    assert c.objectives() == {"g1": pytest.approx(0.995)}


def test_all_errors_at_once_across_gates():
    text = BASE.replace("interval: 1m", "interval: soon").replace("tier: enhancement", "tier: nice")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yml")
    keys = [i.key for i in info.value.issues]
    assert keys == ["phases[0].steps[0].gates[1].tier", "phases[0].steps[0].gates[1].interval"]


# examples/ci holds CI recipes, not tracker configs.
EXAMPLE_CONFIGS = sorted(p for p in (ROOT / "examples").rglob("*.yml") if p.parent.name != "ci")


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_every_example_config_validates(path: Path):
    config = load_config(str(path))
    assert config.gates, f"{path} has no gates"
