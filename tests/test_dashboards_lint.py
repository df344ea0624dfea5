"""Lints over the committed dashboard JSON: our stand-in for grafana's dashboard-linter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"

# File -> (uid, title). The uids are a public interface: links, bookmarks and provisioning use them.
EXPECTED = {
    "overview.json": ("qualitygate-overview", "Quality gates / Overview"),
    "gate-detail.json": ("qualitygate-gate-detail", "Quality gates / Gate detail"),
    "exporter.json": ("qualitygate-exporter", "Quality gates / Exporter"),
}

# Metric names the dashboards may use: the exporter's contract, plus what Prometheus and the
# Python client add to every target. Anything else is a typo or an undocumented metric.
KNOWN_METRICS = {
    "gate_passed",
    "gate_probe_error",
    "gate_value",
    "gate_threshold",
    "gate_evaluation_duration_seconds",
    "gate_interval_seconds",
    "gate_objective_ratio",
    "gate_last_evaluation_timestamp_seconds",
    "gate_last_pass_timestamp_seconds",
    "gate_evaluations_total",
    "gate_uptime_ratio",
    "gate_info",
    "step_completion_ratio",
    "phase_completion_ratio",
    "tracker_completion_ratio",
    "tracker_gates",
    "qualitygate_build_info",
    "qualitygate_config_last_reload_successful",
    "qualitygate_config_last_reload_success_timestamp_seconds",
    "qualitygate_scheduler_lag_seconds",
    "qualitygate_scrape_duration_seconds",
    "up",
    "scrape_duration_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
}
COUNTER_FUNCTIONS = ("rate", "irate", "increase")
DATASOURCE_UID = "${datasource}"


def load(name: str) -> dict:
    """One committed dashboard, parsed."""
    return json.loads((DASHBOARDS / name).read_text(encoding="utf-8"))


def all_panels() -> list[tuple[str, dict]]:
    """(file name, panel) for every panel of every dashboard, rows' children included."""
    found = []
    for name in EXPECTED:
        for panel in load(name)["panels"]:
            found.append((name, panel))
            found.extend((name, child) for child in panel.get("panels", []))
    return found


PANELS = all_panels()
PANEL_IDS = [f"{name}:{panel.get('title', '?')}" for name, panel in PANELS]


def test_exactly_the_three_dashboards_are_committed():
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_uid_title_and_tags_are_stable(name):
    board = load(name)
    uid, title = EXPECTED[name]
    assert board["uid"] == uid
    assert board["title"] == title
    assert "qualitygate" in board["tags"]
    assert board["description"]
    assert board["annotations"] == {"list": []}


@pytest.mark.parametrize("name", EXPECTED)
def test_variables(name):
    board = load(name)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    wanted = {"datasource", "tracker", "phase", "tier"} | ({"gate"} if name == "gate-detail.json" else set())
    assert wanted <= set(variables)
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for var_name in wanted - {"datasource"}:
        variable = variables[var_name]
        assert variable["type"] == "query", var_name
        assert variable["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, var_name
        assert re.fullmatch(rf"label_values\(\w+(\{{.*\}})?, {var_name}\)", variable["query"]), variable["query"]
    for var_name in ("phase", "tier"):
        assert variables[var_name]["includeAll"] and variables[var_name]["allValue"] == ".*"


def test_panel_ids_are_unique_and_grid_fits():
    for name in EXPECTED:
        panels = load(name)["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, (name, panel["title"])
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & area, f"{name}: {panel['title']} overlaps another panel"
            cells |= area


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_has_title_and_description(name, panel):
    assert panel.get("options"), "set the panel's options (Grafana expects an object)"
    assert panel.get("title", "").strip()
    assert len(panel.get("description", "").strip()) >= 20


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_has_unit_or_value_mappings(name, panel):
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults.get("unit") or defaults.get("mappings"), "set a unit (or value mappings) on the panel"


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_and_targets_use_the_datasource_variable(name, panel):
    assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    assert panel["targets"], "a panel without queries"
    for target in panel["targets"]:
        assert target["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
    refs = [t["refId"] for t in panel["targets"]]
    assert all(refs) and len(refs) == len(set(refs)), refs


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_ranges_use_rate_interval(name, panel):
    for target in panel["targets"]:
        expr = target["expr"]
        for window in re.findall(r"\[([^\]]*)\]", expr):
            assert window == "$__rate_interval", f"range [{window}] in {expr!r}: use [$__rate_interval]"
        for function in COUNTER_FUNCTIONS:
            for match in re.finditer(rf"\b{function}\(", expr):
                assert "[$__rate_interval]" in expr[match.end() :], expr


@pytest.mark.parametrize(("name", "panel"), PANELS, ids=PANEL_IDS)
def test_only_known_metrics_and_tracker_scoped(name, panel):
    for target in panel["targets"]:
        expr = target["expr"]
        for metric in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr):
            assert metric in KNOWN_METRICS, f"unknown metric {metric} in {expr!r}"
        for metric, matchers in re.findall(r"\b((?:gate|tracker|phase|step)_\w+)\{([^}]*)\}", expr):
            assert 'tracker="$tracker"' in matchers, f"{metric} not scoped to $tracker in {expr!r}"


def test_status_encoding_is_the_same_everywhere():
    def shows_status(panel: dict) -> bool:
        return any(
            re.search(r"gate_passed\{[^}]*\} \+ 2 \* gate_probe_error", t["expr"])
            and not t["expr"].startswith("count(")
            for t in panel["targets"]
        )

    status_panels = [(name, p) for name, p in PANELS if shows_status(p)]
    assert len(status_panels) >= 5
    for name, panel in status_panels:
        config = panel["fieldConfig"]
        mappings = list(config["defaults"].get("mappings", []))
        for item in config["overrides"]:
            mappings += [m for prop in item["properties"] if prop["id"] == "mappings" for m in prop["value"]]
        texts = {k: v["text"] for m in mappings for k, v in m["options"].items()}
        assert texts == {"0": "FAIL", "1": "PASS", "2": "ERROR"}, (name, panel["title"])


def test_overview_gate_table_links_to_gate_detail_and_back():
    overview = load("overview.json")
    table = next(p for p in overview["panels"] if p["title"] == "Gates")
    links = [
        prop["value"] for o in table["fieldConfig"]["overrides"] for prop in o["properties"] if prop["id"] == "links"
    ]
    urls = [link["url"] for group in links for link in group]
    assert any(
        url.startswith("/d/qualitygate-gate-detail?") and "var-gate=${__data.fields.gate}" in url for url in urls
    )
    detail = load("gate-detail.json")
    assert any(link["url"] == "/d/qualitygate-overview" and link["includeVars"] for link in detail["links"])


def test_overview_has_the_panels_the_issue_lists():
    types = {p["title"]: p["type"] for p in load("overview.json")["panels"]}
    assert types == {
        "Overall completion": "stat",
        "Failing critical gates": "stat",
        "Probe errors": "stat",
        "Completion per phase": "bargauge",
        "Completion over time": "timeseries",
        "Gates": "table",
        "Blockers": "table",
        "Gate status over time": "state-timeline",
    }
    failing = next(p for p in load("overview.json")["panels"] if p["title"] == "Failing critical gates")
    steps = failing["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps == [{"color": "green", "value": None}, {"color": "red", "value": 1}]


def test_exporter_dashboard_covers_the_exporters_health():
    exprs = " ".join(t["expr"] for p in load("exporter.json")["panels"] for t in p["targets"])
    for metric in (
        "gate_evaluations_total",
        "qualitygate_scheduler_lag_seconds",
        "qualitygate_scrape_duration_seconds",
        "qualitygate_config_last_reload_successful",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ):
        assert metric in exprs
