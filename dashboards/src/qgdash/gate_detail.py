"""Quality gates / Gate detail: one gate's measurements, threshold and history."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model

from qgdash.common import (
    DATASOURCE,
    GATE,
    LAST,
    LEGEND_LIST,
    STACKED,
    STATUS_MAPPINGS,
    UID_EXPORTER,
    UID_GATE_DETAIL,
    UID_OVERVIEW,
    base,
    link_to,
    override,
    query,
    rename,
    status_expr,
    thresholds,
    variables,
)

RESULT_COLOURS = {"pass": "green", "fail": "red", "error": "orange"}


def build() -> dashboard.Dashboard:
    """The gate detail dashboard."""
    board = base(
        "Quality gates / Gate detail",
        UID_GATE_DETAIL,
        "One quality gate: its measured value against its threshold, pass history, uptime and evaluations.",
    )
    for variable in variables(gate=True):
        board = board.with_variable(variable)
    board = board.link(link_to(UID_OVERVIEW, "Back to overview", "Every gate of the tracker"))
    board = board.link(link_to(UID_EXPORTER, "Exporter", "The exporter's own health"))
    for panel in panels():
        board = board.with_panel(panel)
    return board


def panels() -> list[object]:
    """The gate detail's panels, top to bottom."""
    return [
        _status_stat(),
        _uptime_stat(),
        _timestamp_stat(3, "Last pass", "gate_last_pass_timestamp_seconds", "When the gate last passed."),
        _timestamp_stat(
            4, "Last evaluation", "gate_last_evaluation_timestamp_seconds", "When the gate was last evaluated."
        ),
        _info_table(),
        _value_vs_threshold(),
        _pass_history(),
        _evaluation_duration(),
        _evaluations_by_result(),
    ]


def _status_stat() -> stat.Panel:
    return (
        stat.Panel()
        .id(1)
        .title("Status")
        .description(
            "The gate's status now: PASS, FAIL (measured, misses the expectation) or ERROR (could not measure)."
        )
        .datasource(DATASOURCE)
        .with_target(query(status_expr(GATE), "{{gate}}"))
        .mappings(STATUS_MAPPINGS)
        .thresholds(thresholds("red", (1, "green"), (2, "orange")))
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.NONE)
        .color_mode(common_model.BigValueColorMode.BACKGROUND)
        .height(5)
        .span(6)
    )


def _uptime_stat() -> stat.Panel:
    return (
        stat.Panel()
        .id(2)
        .title("Uptime")
        .description("Fraction of the gate's evaluations that passed over the tracker's uptime window (default 30d).")
        .datasource(DATASOURCE)
        .with_target(query(f"gate_uptime_ratio{{{GATE}}}", "{{gate}}"))
        .unit("percentunit")
        .decimals(2)
        .min(0)
        .max(1)
        .thresholds(thresholds("red", (0.99, "orange"), (0.999, "green")))
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.AREA)
        .color_mode(common_model.BigValueColorMode.VALUE)
        .height(5)
        .span(6)
    )


def _timestamp_stat(panel_id: int, title: str, metric: str, description: str) -> stat.Panel:
    return (
        stat.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(f"{metric}{{{GATE}}} * 1000", "{{gate}}", instant=True))
        .unit("dateTimeFromNow")
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.NONE)
        .color_mode(common_model.BigValueColorMode.NONE)
        .height(5)
        .span(6)
    )


def _info_table() -> table.Panel:
    return (
        table.Panel()
        .show_header(True)
        .id(5)
        .title("Gate")
        .description(
            "Where the gate sits in the plan: title, team, phase, step, tier, and the exporter that probes it."
        )
        .datasource(DATASOURCE)
        .with_target(query(f"gate_info{{{GATE}}}", ref="A", instant=True, table=True))
        .with_transformation(
            rename(
                {"title": "Title", "team": "Team", "instance": "Exporter"},
                hide=["Time", "Value", "__name__", "job", "tracker"],
                order=["gate", "Title", "Team", "phase", "step", "tier", "Exporter"],
            )
        )
        .unit("none")
        .height(4)
        .span(24)
    )


def _value_vs_threshold() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(6)
        .title("Value against threshold")
        .description(
            "The gate's primary measurement and the number of its first condition, in base units "
            "(seconds, ratios 0..1, bytes)."
        )
        .datasource(DATASOURCE)
        .with_target(query(f"gate_value{{{GATE}}}", "value", "A"))
        .with_target(query(f"gate_threshold{{{GATE}}}", "threshold", "B"))
        .unit("short")
        .line_interpolation(common_model.LineInterpolation.STEP_AFTER)
        .legend(LEGEND_LIST)
        .override_by_name(
            "threshold",
            override(
                color={"mode": "fixed", "fixedColor": "red"}, custom__lineStyle={"fill": "dash", "dash": [10, 10]}
            ),
        )
        .height(9)
        .span(12)
    )


def _pass_history() -> statetimeline.Panel:
    return (
        statetimeline.Panel()
        .id(7)
        .title("Pass history")
        .description(
            "The gate's status over the time range: green PASS, red FAIL, orange ERROR; gaps are pending or absent."
        )
        .datasource(DATASOURCE)
        .with_target(query(status_expr(GATE), "{{gate}}"))
        .mappings(STATUS_MAPPINGS)
        .thresholds(thresholds("red", (1, "green"), (2, "orange")))
        .color_scheme(dashboard.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .show_value(common_model.VisibilityMode.NEVER)
        .merge_values(True)
        .fill_opacity(80)
        .legend(LEGEND_LIST)
        .height(9)
        .span(12)
    )


def _evaluation_duration() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(8)
        .title("Evaluation duration")
        .description("How long each evaluation of the gate took (the probe's own time, timeouts included).")
        .datasource(DATASOURCE)
        .with_target(query(f"gate_evaluation_duration_seconds{{{GATE}}}", "duration"))
        .unit("s")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )


def _evaluations_by_result() -> timeseries.Panel:
    board = (
        timeseries.Panel()
        .id(9)
        .title("Evaluations by result")
        .description("Evaluations per second of the gate, split into pass, fail and error.")
        .datasource(DATASOURCE)
        .with_target(query(f"sum by (result) (rate(gate_evaluations_total{{{GATE}}}[$__rate_interval]))", "{{result}}"))
        .unit("ops")
        .min(0)
        .stacking(STACKED)
        .fill_opacity(30)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )
    for result, colour in RESULT_COLOURS.items():
        board = board.override_by_name(result, override(color={"mode": "fixed", "fixedColor": colour}))
    return board
