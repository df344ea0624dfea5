"""A lint of the rules bundle: names, labels, annotations, runbooks and metrics (our stand-in for pint/mixtool)."""

from __future__ import annotations

import re

import pytest

from exporter.exposition import gates as exposition
from rules_support import PROMETHEUS_METRICS, RUNBOOKS, github_anchors, metric_names, rules, template_metric_names

# The metric names of the contract; test_rules_exporter.py checks the rules against a real
# exporter's /metrics as well.
CONTRACT_METRICS = set(exposition.CONTRACT_METRICS) | {"qualitygate_web_info"}  # --web.external-url, serve only
SEVERITIES = {"critical", "warning", "info"}

# The issue's table: alert -> (severities, `for`).
SPEC = {
    "QualityGateCriticalFailing": ({"critical"}, {"5m"}),
    "QualityGateImportantFailing": ({"warning"}, {"15m"}),
    "QualityGateEnhancementFailing": ({"info"}, {"1h"}),
    "QualityGateUptimeBelowObjective": ({"warning"}, {"1h"}),
    "QualityGateProbeError": ({"warning"}, {"10m"}),
    "QualityGateAwaitingEvidence": ({"info"}, {"1h"}),
    "QualityGateEvidenceExpired": ({"warning"}, {"5m"}),
    "QualityGateStale": ({"warning"}, {None}),
    "QualityGatePhaseRegressed": ({"warning"}, {"15m"}),
    "QualityGateErrorBudgetBurn": ({"critical", "warning"}, {"2m", "15m"}),
    "QualityGateExporterDown": ({"critical"}, {"5m"}),
    "QualityGateConfigReloadFailed": ({"warning"}, {"5m"}),
}

ALERTS = rules("alert")
RECORDS = rules("record")


def _id(rule: dict) -> str:
    return f"{rule['alert']}/{rule['labels']['severity']}" if "alert" in rule else rule["record"]


def test_the_bundle_has_exactly_the_alerts_of_the_issue():
    found: dict[str, tuple[set, set]] = {}
    for rule in ALERTS:
        severities, fors = found.setdefault(rule["alert"], (set(), set()))
        severities.add(rule["labels"]["severity"])
        fors.add(rule.get("for"))
    assert found == SPEC


@pytest.mark.parametrize("rule", ALERTS, ids=_id)
def test_alert_name_severity_and_annotations(rule):
    assert re.fullmatch(r"QualityGate(?:[A-Z][a-z0-9]+)+", rule["alert"]), "CamelCase with the QualityGate prefix"
    assert rule["labels"]["severity"] in SEVERITIES
    assert set(rule["labels"]) == {"severity"}, "labels come from the series; only severity is added"
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["summary"].strip() and "{{" not in annotations["summary"], "summary is a static sentence"
    assert "{{" in annotations["description"], "description is templated"


def _described_labels(rule: dict) -> set[str]:
    """The labels an alert's description must name: those that say which gate, phase or exporter."""
    names = metric_names(rule["expr"])
    if any(n.startswith(("gate_", "gate:")) for n in names):
        return {"tracker", "phase", "step", "gate"}
    if any(n.startswith("tracker_phase:") for n in names):
        return {"tracker", "phase"}
    return {"job"}


@pytest.mark.parametrize("rule", ALERTS, ids=_id)
def test_descriptions_name_what_alerts(rule):
    description = rule["annotations"]["description"]
    for label in _described_labels(rule):
        assert f"$labels.{label}" in description


def test_runbook_urls_share_one_base_and_every_anchor_is_a_runbook_heading():
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    bases = set()
    for rule in ALERTS:
        base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        bases.add(base)
        assert anchor in anchors, f"{rule['alert']}: no heading in docs/runbooks.md has the anchor #{anchor}"
        assert anchor == rule["alert"].lower(), "the anchor is the alert's own section"
    assert len(bases) == 1 and next(iter(bases)).endswith("/docs/runbooks.md"), bases


def test_every_runbook_section_belongs_to_an_alert():
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    assert sorted(headings) == sorted(SPEC)


def test_rules_use_only_metrics_the_exporter_exposes():
    recorded = {r["record"] for r in RECORDS}
    known = CONTRACT_METRICS | PROMETHEUS_METRICS | recorded
    for rule in rules():
        used = metric_names(rule["expr"])
        for template in rule.get("annotations", {}).values():
            used |= template_metric_names(template)
        assert used, f"{_id(rule)} selects no metric"
        assert used <= known, f"{_id(rule)} uses unknown metrics {sorted(used - known)}"


def test_metric_name_extraction():
    expr = ('(1 - gate:gate_passed:avg_over_time1h) / (1 - gate_objective_ratio) > 14.4 and on (gate) '
            'max_over_time(x_ratio{job="a",b=~"c|d"}[1d]) == 1 unless sum without (instance) (up) or absent(y{z=""})')
    assert metric_names(expr) == {"gate:gate_passed:avg_over_time1h", "gate_objective_ratio", "x_ratio", "up", "y"}
    assert template_metric_names('{{ with printf "gate_value{job=%q}" $labels.job | query }}') == {"gate_value"}


@pytest.mark.parametrize("rule", RECORDS, ids=_id)
def test_recording_rule_names_are_level_metric_operations(rule):
    level, metric, operations = rule["record"].split(":")
    assert re.fullmatch(r"[a-z]+(?:_[a-z]+)*", level) and re.fullmatch(r"[a-z_]+", metric)
    assert re.fullmatch(r"[a-z0-9_]+", operations)
    assert metric in rule["expr"], "the metric part names the metric the rule is computed from"
    if re.search(r"\b(sum|count|avg|min|max)\b", rule["expr"]):
        assert " by " not in rule["expr"] and "without" in rule["expr"], "aggregate `without` the dropped labels"


def test_groups_are_one_per_concern_and_prefixed():
    names = [r["_group"] for r in rules()]
    groups = list(dict.fromkeys(names))
    assert all(g.startswith("qualitygate.") for g in groups)
    assert len({(r["_file"], r["_group"]) for r in rules()}) == len(groups), "a group name is used in two files"


def test_the_scrape_job_is_named_in_one_rule_only():
    naming = [r for r in rules() if re.search(r"\bjob\s*=", r["expr"])]
    assert [r.get("alert") for r in naming] == ["QualityGateExporterDown"]
    assert set(re.findall(r'job\s*=\s*"([^"]*)"', naming[0]["expr"])) == {"qualitygate"}
