"""The overview's unit columns and Evidence row, run by a real PromQL engine (promtool test rules).

Every query of those panels, with its variables substituted as Grafana does, is evaluated over input
series shaped like the exporter's (the labels of exporter/exposition/gates.py, plus the job and
instance Prometheus adds), and must give exactly the expected samples: a typo, a wrong join or a
wrong comparison fails here, not on someone's screen. tests/test_stack_fullstack.py runs the same
queries against a real exporter scraped by a real Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from stack_support import have

pytestmark = pytest.mark.skipif(bool(have("promtool")), reason="promtool missing")

ROOT = Path(__file__).resolve().parent.parent
NOW = 600  # the evaluation time (10m): what time() returns
DAY = 86400
NEW_PANELS = ("Awaiting evidence", "Evidence expiring within 7 days", "Oldest evidence", "Manual vs measured",
              "Evidence per gate")
UNIT_REFS = tuple("CDEFGHIJ")  # the Gates table's per-family value and threshold queries

# (gate, phase, kind, unit, tier): tracker "t" has every kind of source; "bare" only probed gates.
GATES = {
    "t": [
        ("cov", "build", "coverage", "percent", "critical"),
        ("web", "build", "http", "seconds", "important"),
        ("artifact", "build", "file", "bytes", "enhancement"),
        ("cmd", "build", "command", "number", "important"),
        ("signoff", "release", "manual", "number", "critical"),
        ("audit", "release", "manual", "number", "important"),
        ("pushcov", "release", "coverage", "percent", "critical"),
        ("pushsarif", "release", "sarif", "number", "important"),
    ],
    "bare": [("ping", "run", "tcp", "seconds", "critical")],
}
# gate -> {metric: value}; a metric left out has no series (as the exporter leaves it out).
SERIES = {
    "cov": {"gate_passed": 0, "gate_probe_error": 0, "gate_value": 0.714, "gate_threshold": 0.85},
    "web": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 0.027, "gate_threshold": 0.5},
    "artifact": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 1048576, "gate_threshold": 2097152},
    "cmd": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 0, "gate_threshold": 0},
    # Attested 600 s ago, lapses in 3 days: expiring within the week.
    "signoff": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 1, "gate_awaiting_evidence": 0,
                "gate_evidence_timestamp_seconds": NOW - 600, "gate_evidence_expiry_timestamp_seconds": NOW + 3 * DAY},
    # Never attested: awaiting, fails closed, no evidence times.
    "audit": {"gate_passed": 0, "gate_probe_error": 0, "gate_awaiting_evidence": 1},
    # Pushed 300 s ago, lapses in 10 days.
    "pushcov": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 0.9, "gate_threshold": 0.85,
                "gate_awaiting_evidence": 0, "gate_evidence_timestamp_seconds": NOW - 300,
                "gate_evidence_expiry_timestamp_seconds": NOW + 10 * DAY},
    # Pushed 500 s ago and already lapsed 300 s ago: failing, not "expiring".
    "pushsarif": {"gate_passed": 0, "gate_probe_error": 0, "gate_value": 3, "gate_threshold": 0,
                  "gate_awaiting_evidence": 0, "gate_evidence_timestamp_seconds": NOW - 500,
                  "gate_evidence_expiry_timestamp_seconds": NOW - 300},
    "ping": {"gate_passed": 1, "gate_probe_error": 0, "gate_value": 0.002, "gate_threshold": 0.1},
}


def gate_labels(tracker: str, gate: str, phase: str, tier: str) -> dict[str, str]:
    """The labels every per-gate series of the exporter has, once Prometheus has scraped it."""
    return {"job": "qualitygate", "instance": "exporter:9916", "tracker": tracker, "phase": phase, "step": "s",
            "gate": gate, "tier": tier}


def series_text(name: str, labels: dict[str, str]) -> str:
    """A series in promtool's input notation."""
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def input_series() -> list[dict[str, str]]:
    """Every tracker's series, constant over the 10 minutes up to the evaluation time."""
    found = []
    for tracker, gates in GATES.items():
        for gate, phase, kind, unit, tier in gates:
            labels = gate_labels(tracker, gate, phase, tier)
            info = labels | {"title": gate.title(), "team": "qa", "kind": kind, "unit": unit}
            found.append({"series": series_text("gate_info", info), "values": "1x10"})
            for metric, value in SERIES[gate].items():
                found.append({"series": series_text(metric, labels), "values": f"{value}x10"})
    return found


def sample(value: float, **labels: str) -> dict[str, object]:
    """One expected output sample."""
    return {"labels": "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}", "value": value}


def by_gate(tracker: str, gate: str, **extra: str) -> dict[str, str]:
    """The labels a `max by (tracker, phase, step, gate, tier)` result of `gate` has."""
    _, phase, _, _, tier = next(g for g in GATES[tracker] if g[0] == gate)
    return {"tracker": tracker, "phase": phase, "step": "s", "gate": gate, "tier": tier} | extra


def per_gate(tracker: str, values: dict[str, float], **extra: str) -> list[dict[str, object]]:
    """Expected per-gate samples."""
    return [sample(v, **by_gate(tracker, g, **extra)) for g, v in values.items()]


def info_of(tracker: str, gate: str) -> dict[str, str]:
    """The labels of the evidence table's gate_info query for `gate`."""
    kind = next(g[2] for g in GATES[tracker] if g[0] == gate)
    return by_gate(tracker, gate, title=gate.title(), kind=kind)


def sources(manual: float | None, pushed: float | None, probed: float) -> list[dict[str, object]]:
    """Expected samples of a Manual vs measured query (a source with no gates has no sample)."""
    counts = {"manual": manual, "pushed": pushed, "probed": probed}
    return [sample(v, source=s) for s, v in counts.items() if v is not None]


EVIDENCED = ("signoff", "audit", "pushcov", "pushsarif")
EXPECTED = {
    "t": {
        ("Awaiting evidence", "A"): [sample(1, tracker="t")],
        ("Evidence expiring within 7 days", "A"): [sample(1, tracker="t")],
        ("Oldest evidence", "A"): [sample(600, tracker="t")],
        ("Manual vs measured", "A"): sources(2, 2, 4),
        ("Manual vs measured", "B"): sources(1, 1, 3),
        ("Manual vs measured", "C"): sources(1, 0, 0),
        ("Evidence per gate", "A"): [sample(1, **info_of("t", g)) for g in EVIDENCED],
        ("Evidence per gate", "B"): per_gate("t", {"signoff": 1, "audit": 0, "pushcov": 1, "pushsarif": 0}),
        ("Evidence per gate", "C"): per_gate("t", {"signoff": 0, "audit": 1, "pushcov": 0, "pushsarif": 0}),
        ("Evidence per gate", "D"): per_gate("t", {"signoff": 600, "pushcov": 300, "pushsarif": 500}),
        ("Evidence per gate", "E"): per_gate("t", {"signoff": 3 * DAY, "pushcov": 10 * DAY, "pushsarif": -300}),
        ("Gates", "C"): per_gate("t", {"cov": 0.714, "pushcov": 0.9}),
        ("Gates", "D"): per_gate("t", {"cov": 0.85, "pushcov": 0.85}),
        ("Gates", "E"): per_gate("t", {"web": 0.027}),
        ("Gates", "F"): per_gate("t", {"web": 0.5}),
        ("Gates", "G"): per_gate("t", {"artifact": 1048576}),
        ("Gates", "H"): per_gate("t", {"artifact": 2097152}),
        ("Gates", "I"): per_gate("t", {"cmd": 0, "signoff": 1, "pushsarif": 3}),
        ("Gates", "J"): per_gate("t", {"cmd": 0, "pushsarif": 0}),
    },
    # No gate takes evidence from outside: the counts say 0 (not "no data"), the lists are empty.
    "bare": {
        ("Awaiting evidence", "A"): [sample(0)],
        ("Evidence expiring within 7 days", "A"): [sample(0)],
        ("Oldest evidence", "A"): [],
        ("Manual vs measured", "A"): sources(None, None, 1),
        ("Manual vs measured", "B"): sources(None, None, 1),
        ("Manual vs measured", "C"): sources(None, None, 0),
        **{("Evidence per gate", ref): [] for ref in "ABCDE"},
        ("Gates", "C"): [],
        ("Gates", "E"): per_gate("bare", {"ping": 0.002}),
        ("Gates", "F"): per_gate("bare", {"ping": 0.1}),
        **{("Gates", ref): [] for ref in "DGHIJ"},
    },
}


def new_targets() -> dict[tuple[str, str], str]:
    """(panel title, refId) -> expr for the Evidence row and the Gates table's unit columns."""
    board = json.loads((ROOT / "dashboards" / "overview.json").read_text(encoding="utf-8"))
    found = {}
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if panel["title"] in NEW_PANELS or (panel["title"] == "Gates" and target["refId"] in UNIT_REFS):
                found[(panel["title"], target["refId"])] = target["expr"]
    return found


def substitute(expr: str, tracker: str) -> str:
    """Grafana's substitution of the overview's variables (phase and tier on All)."""
    values = {"tracker": tracker, "phase": ".*", "tier": ".*"}
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def promtool_test(directory: Path, tests: list[dict[str, object]]) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on a unit-test file of `tests` (expression tests only, no rule files)."""
    path = directory / "dashboards_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}, sort_keys=False), encoding="utf-8")
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def test_every_new_query_has_an_expectation():
    targets = new_targets()
    assert len(targets) == 19
    for tracker, expected in EXPECTED.items():
        assert set(expected) == set(targets), tracker


def test_new_queries_give_the_expected_samples_in_promtool(tmp_path):
    targets = new_targets()
    tests = [
        {
            "interval": "1m",
            "input_series": input_series(),
            "promql_expr_test": [
                {"expr": substitute(targets[key], tracker), "eval_time": f"{NOW}s", "exp_samples": samples}
                for key, samples in expected.items()
            ],
        }
        for tracker, expected in EXPECTED.items()
    ]
    result = promtool_test(tmp_path, tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_query(tmp_path):
    """The check above can fail: a query that does not parse, or gives other samples, is reported."""
    expr = substitute(new_targets()[("Evidence expiring within 7 days", "A")], "t")
    tests = [{"interval": "1m", "input_series": input_series(), "promql_expr_test": [
        {"expr": expr.replace("< 7 * 86400 > 0", "< 7 * 86400 >"), "eval_time": f"{NOW}s", "exp_samples": []},
        {"expr": expr.replace("> 0", ""), "eval_time": f"{NOW}s", "exp_samples": [sample(1, tracker="t")]},
    ]}]
    result = promtool_test(tmp_path, tests)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "parse error" in output
    # Without "> 0" the lapsed push counts too: 2, not 1.
    assert 'got: {tracker="t"} 2E+00' in output, output
