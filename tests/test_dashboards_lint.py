"""Lints over the committed dashboard JSON: our stand-in for grafana's dashboard-linter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from exporter.config.units import FAMILIES
from exporter.exposition.gates import CONTRACT_METRICS

DASHBOARDS = Path(__file__).resolve().parent.parent / "dashboards"

# File -> (uid, title). The uids are a public interface: links, bookmarks and provisioning use them.
EXPECTED = {
    "overview.json": ("qualitygate-overview", "Quality gates / Overview"),
    "gate-detail.json": ("qualitygate-gate-detail", "Quality gates / Gate detail"),
    "exporter.json": ("qualitygate-exporter", "Quality gates / Exporter"),
}

# Metric names the dashboards may use: the exporter's contract, its own health metrics, plus what
# Prometheus and the Python client add to every target. Anything else is a typo or an undocumented metric.
KNOWN_METRICS = set(CONTRACT_METRICS) | {
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
    """(file name, panel) for every panel of every dashboard, rows' children included, row headers not."""
    found = []
    for name in EXPECTED:
        for panel in load(name)["panels"]:
            if panel["type"] != "row":
                found.append((name, panel))
            found.extend((name, child) for child in panel.get("panels", []))
    return found


def field_mappings(panel: dict, column: str) -> list[dict]:
    """The value mappings that apply to `column` of a panel: the defaults', then its own override's."""
    config = panel["fieldConfig"]
    mappings = list(config["defaults"].get("mappings", []))
    for item in config["overrides"]:
        if item["matcher"] == {"id": "byName", "options": column}:
            mappings += [m for prop in item["properties"] if prop["id"] == "mappings" for m in prop["value"]]
    return mappings


def column_property(panel: dict, column: str, prop_id: str) -> object:
    """The value of one override property of a table column (None: not overridden)."""
    for item in panel["fieldConfig"]["overrides"]:
        if item["matcher"] == {"id": "byName", "options": column}:
            for prop in item["properties"]:
                if prop["id"] == prop_id:
                    return prop["value"]
    return None


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
        mappings = field_mappings(panel, "Status")
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
        "Evidence": "row",
        "Awaiting evidence": "stat",
        "Evidence expiring within 7 days": "stat",
        "Oldest evidence": "stat",
        "Manual vs measured": "table",
        "Evidence per gate": "table",
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


GRAFANA_UNITS = {"percent": "percentunit", "seconds": "s", "bytes": "bytes", "number": "short"}


def test_open_rows_hold_no_panels_and_come_before_theirs():
    for name in EXPECTED:
        panels = load(name)["panels"]
        for i, row in enumerate(panels):
            if row["type"] != "row":
                continue
            # Grafana shows the panels nested in a row only once it is collapsed, so an open row nests none.
            assert row["collapsed"] is False and row["panels"] == [], (name, row["title"])
            assert row["title"].strip() and row["gridPos"]["w"] == 24
            after = panels[i + 1 :]
            assert after and all(p["gridPos"]["y"] > row["gridPos"]["y"] for p in after), (name, row["title"])


def test_gate_table_has_a_value_and_threshold_column_per_unit_family():
    table = next(p for p in load("overview.json")["panels"] if p["title"] == "Gates")
    organize = next(t for t in table["transformations"] if t["id"] == "organize")["options"]
    exprs = {t["refId"]: t["expr"] for t in table["targets"]}
    seen = set()
    for ref, expr in exprs.items():
        family = re.search(r'gate_info\{[^}]*unit="(\w+)"', expr)
        if family is None:
            continue
        unit = family.group(1)
        seen.add(unit)
        metric = re.match(r"max by \([^)]*\) \((gate_value|gate_threshold)\{", expr)
        assert metric, expr
        column = organize["renameByName"][f"Value #{ref}"]
        assert column_property(table, column, "unit") == GRAFANA_UNITS[unit], (column, unit)
        assert ("threshold" in column) == (metric.group(1) == "gate_threshold"), column
    # Every unit family the exporter labels gates with has its columns, and nothing else does.
    assert seen == set(FAMILIES) == set(GRAFANA_UNITS)
    assert not any("gate_value" in e or "gate_threshold" in e for r, e in exprs.items() if r in ("A", "B"))


def test_evidence_row_counts_what_the_issue_asks():
    panels = load("overview.json")["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Evidence")
    content = {p["title"]: p for p in panels[row + 1 :]}
    assert list(content) == [
        "Awaiting evidence",
        "Evidence expiring within 7 days",
        "Oldest evidence",
        "Manual vs measured",
        "Evidence per gate",
    ]
    expr = {title: " ".join(t["expr"] for t in p["targets"]) for title, p in content.items()}
    assert expr["Awaiting evidence"].startswith("sum by (tracker) (gate_awaiting_evidence{")
    assert "gate_evidence_expiry_timestamp_seconds{" in expr["Evidence expiring within 7 days"]
    assert "< 7 * 86400 > 0" in expr["Evidence expiring within 7 days"]
    assert "time() - gate_evidence_timestamp_seconds{" in expr["Oldest evidence"]
    for source in ("manual", "pushed", "probed"):
        assert f'"source", "{source}"' in expr["Manual vs measured"]
    assert content["Oldest evidence"]["fieldConfig"]["defaults"]["unit"] == "s"
    per_gate = content["Evidence per gate"]
    assert {m["options"]["1"]["text"] for m in field_mappings(per_gate, "Evidence")} == {"AWAITING"}
    assert column_property(per_gate, "Lapses in", "thresholds")["steps"][-1] == {"color": "green", "value": 604800}
