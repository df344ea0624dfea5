"""Pieces every quality-gate dashboard shares: datasource, variables, selectors, status encoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

UID_OVERVIEW = "qualitygate-overview"
UID_GATE_DETAIL = "qualitygate-gate-detail"
UID_EXPORTER = "qualitygate-exporter"

# What each dashboard shows, as the tooltip of links to it.
PURPOSE = {
    UID_OVERVIEW: "Every gate of the tracker",
    UID_GATE_DETAIL: "One gate's value, threshold and history",
    UID_EXPORTER: "The exporter's own health",
}

TAGS = ["qualitygate"]

# Label matchers for the dashboard variables; phase and tier default to "All" (regex .*).
TRACKER = 'tracker="$tracker"'
GATES = 'tracker="$tracker", phase=~"$phase", tier=~"$tier"'
GATE = 'tracker="$tracker", gate="$gate"'

PASS, FAIL, ERROR = 1, 0, 2
# Series colours of the evaluation results, the same on every dashboard.
RESULT_COLOURS = {"pass": "green", "fail": "red", "error": "orange"}


def value_mappings(values: dict[int, tuple[str, str]]) -> list[model.ValueMapping]:
    """Value mappings from {number: (text, colour)}."""
    results = {
        str(k): model.ValueMappingResult(text=t, color=c, index=i) for i, (k, (t, c)) in enumerate(values.items())
    }
    return [model.ValueMap(options=results)]


STATUS_MAPPINGS = value_mappings({FAIL: ("FAIL", "red"), PASS: ("PASS", "green"), ERROR: ("ERROR", "orange")})


def status_expr(selector: str) -> str:
    """PromQL for a gate's status: 1 PASS, 0 FAIL, 2 ERROR (gate_passed is 0 on error)."""
    return f"gate_passed{{{selector}}} + 2 * gate_probe_error{{{selector}}}"


def query(
    expr: str, legend: str = "__auto", ref: str = "A", *, instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    """A Prometheus target on the dashboard's datasource variable."""
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE).legend_format(legend)
    target = target.instant() if instant else target.range()
    if table:
        target = target.format(prom_model.PromQueryFormat.TABLE)
    return target


def thresholds(base: str, *steps: tuple[float, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds: `base` colour below the first step, then each (value, colour)."""
    levels = [model.Threshold(value=None, color=base)] + [model.Threshold(value=v, color=c) for v, c in steps]
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(levels)


def override(**properties: object) -> list[model.DynamicConfigValue]:
    """Field-override properties from keyword arguments (dots spelled as double underscores)."""
    return [model.DynamicConfigValue(id_val=key.replace("__", "."), value=value) for key, value in properties.items()]


def rename(columns: dict[str, str], hide: list[str], order: list[str]) -> model.DataTransformerConfig:
    """An `organize` transformation: rename, hide and order (by their new names) table columns."""
    # Grafana orders and hides by the original field names, before renaming.
    original = {new: old for old, new in columns.items()}
    return model.DataTransformerConfig(
        id_val="organize",
        options={
            "renameByName": columns,
            "excludeByName": {name: True for name in hide},
            "indexByName": {original.get(name, name): i for i, name in enumerate(order)},
        },
    )


MERGE = model.DataTransformerConfig(id_val="merge", options={})


def variables(
    *, gate: bool = False, instance: bool = False
) -> list[dashboard.QueryVariable | dashboard.DatasourceVariable]:
    """The datasource, tracker, phase and tier variables, plus `gate` or `instance` when asked."""
    found: list[dashboard.QueryVariable | dashboard.DatasourceVariable] = [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _query_variable("tracker", "Tracker", "label_values(tracker_completion_ratio, tracker)"),
        _query_variable("phase", "Phase", f"label_values(gate_info{{{TRACKER}}}, phase)", every=True),
        _query_variable("tier", "Tier", f"label_values(gate_info{{{TRACKER}}}, tier)", every=True),
    ]
    if gate:
        found.append(_query_variable("gate", "Gate", f"label_values(gate_info{{{GATES}}}, gate)"))
    if instance:
        found.append(
            _query_variable(
                "instance",
                "Exporter",
                f"label_values(tracker_completion_ratio{{{TRACKER}}}, instance)",
                every=True,
                regex_all=False,
            )
        )
    return found


def _query_variable(
    name: str, label: str, expr: str, *, every: bool = False, regex_all: bool = True
) -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(expr)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    if every:
        variable = variable.include_all(True).multi(True)
        if regex_all:
            variable = variable.all_value(".*")
    return variable


def link_to(uid: str, title: str) -> dashboard.DashboardLink:
    """A dashboard-level link that keeps the time range and the variables."""
    return (
        dashboard.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(f"/d/{uid}")
        .tooltip(PURPOSE[uid])
        .icon("dashboard")
        .include_vars(True)
        .keep_time(True)
    )


def base(title: str, uid: str, description: str) -> dashboard.Dashboard:
    """A dashboard with the shared settings: tags, time range, refresh, tooltips."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-6h", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .timezone("browser")
        .editable()
        .annotations([])
    )


def compose(
    title: str,
    uid: str,
    description: str,
    *,
    variables: list[dashboard.QueryVariable | dashboard.DatasourceVariable],
    links: list[dashboard.DashboardLink],
    panels: list[object],
    rows: Sequence[tuple[dashboard.Row, list[object]]] = (),
) -> dashboard.Dashboard:
    """A dashboard with the shared settings, then its variables, links, panels and rows in order.

    An open row holds no panels in the JSON: Grafana puts the panels that follow a row header in it.
    """
    board = base(title, uid, description)
    for variable in variables:
        board = board.with_variable(variable)
    for link in links:
        board = board.link(link)
    for item in panels:
        board = board.with_panel(item)
    for header, content in rows:
        board = board.with_row(header)
        for item in content:
            board = board.with_panel(item)
    return board


LEGEND_LIST = (
    common.VizLegendOptions()
    .display_mode(common_model.LegendDisplayMode.LIST)
    .placement(common_model.LegendPlacement.BOTTOM)
    .show_legend(True)
)
STACKED = common.StackingConfig().mode(common_model.StackingMode.NORMAL)
LAST = common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
STATUS_THRESHOLDS = thresholds("red", (PASS, "green"), (ERROR, "orange"))

PanelT = TypeVar("PanelT", bargauge.Panel, stat.Panel, statetimeline.Panel, table.Panel, timeseries.Panel)


def panel(builder: PanelT, panel_id: int, title: str, description: str) -> PanelT:
    """Every panel's head: id, title, description, and the dashboard's datasource variable."""
    return builder.id(panel_id).title(title).description(description).datasource(DATASOURCE)


def stat_panel(
    panel_id: int,
    title: str,
    description: str,
    target: prometheus.Dataquery,
    *,
    graph: common_model.BigValueGraphMode,
    colour: common_model.BigValueColorMode,
    span: int = 6,
) -> stat.Panel:
    """A single-value panel of the top row: the last non-null value of `target`."""
    return (
        panel(stat.Panel(), panel_id, title, description)
        .with_target(target)
        .reduce_options(LAST)
        .graph_mode(graph)
        .color_mode(colour)
        .height(5)
        .span(span)
    )


def count_stat(panel_id: int, title: str, description: str, target: prometheus.Dataquery, alert: str) -> stat.Panel:
    """A count of the top row (a third wide): green at zero, the `alert` colour from one up."""
    return (
        stat_panel(
            panel_id,
            title,
            description,
            target,
            graph=common_model.BigValueGraphMode.NONE,
            colour=common_model.BigValueColorMode.BACKGROUND,
            span=8,
        )
        .unit("none")
        .decimals(0)
        .thresholds(thresholds("green", (1, alert)))
    )


def timeseries_panel(
    panel_id: int,
    title: str,
    description: str,
    *targets: prometheus.Dataquery,
    unit: str,
    span: int,
    height: int = 8,
    minimum: float | None = 0,
) -> timeseries.Panel:
    """A time series panel of `targets` with the list legend below; the y axis starts at `minimum`."""
    built = panel(timeseries.Panel(), panel_id, title, description)
    for target in targets:
        built = built.with_target(target)
    if minimum is not None:
        built = built.min(minimum)
    return built.unit(unit).legend(LEGEND_LIST).height(height).span(span)


def fixed_colours(built: PanelT, colours: dict[str, str]) -> PanelT:
    """Give each series named in `colours` its fixed colour."""
    for name, colour in colours.items():
        built = built.override_by_name(name, override(color={"mode": "fixed", "fixedColor": colour}))
    return built


def status_timeline(panel_id: int, title: str, description: str, selector: str, legend: str) -> statetimeline.Panel:
    """The status of the gates `selector` picks over time: green PASS, red FAIL, orange ERROR."""
    return (
        panel(statetimeline.Panel(), panel_id, title, description)
        .with_target(query(status_expr(selector), legend))
        .mappings(STATUS_MAPPINGS)
        .thresholds(STATUS_THRESHOLDS)
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .show_value(common_model.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
        .legend(LEGEND_LIST)
    )
