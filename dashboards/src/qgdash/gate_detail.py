"""Quality gates / Gate detail: one gate's measurements, threshold and history."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as common_model

from qgdash.common import (
    GATE,
    RESULT_COLOURS,
    STACKED,
    STATUS_MAPPINGS,
    STATUS_THRESHOLDS,
    UID_EXPORTER,
    UID_GATE_DETAIL,
    UID_OVERVIEW,
    compose,
    fixed_colours,
    link_to,
    override,
    panel,
    query,
    rename,
    stat_panel,
    status_expr,
    status_timeline,
    thresholds,
    timeseries_panel,
    variables,
)


def build() -> dashboard.Dashboard:
    """The gate detail dashboard."""
    return compose(
        "Quality gates / Gate detail",
        UID_GATE_DETAIL,
        "One quality gate: its measured value against its threshold, pass history, uptime and evaluations.",
        variables=variables(gate=True),
        links=[link_to(UID_OVERVIEW, "Back to overview"), link_to(UID_EXPORTER, "Exporter")],
        panels=panels(),
    )


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
        stat_panel(
            1,
            "Status",
            "The gate's status now: PASS, FAIL (measured, misses the expectation) or ERROR (could not measure).",
            query(status_expr(GATE), "{{gate}}"),
            graph=common_model.BigValueGraphMode.NONE,
            colour=common_model.BigValueColorMode.BACKGROUND,
        )
        .mappings(STATUS_MAPPINGS)
        .thresholds(STATUS_THRESHOLDS)
    )


def _uptime_stat() -> stat.Panel:
    return (
        stat_panel(
            2,
            "Uptime",
            "Fraction of the gate's evaluations that passed over the tracker's uptime window (default 30d).",
            query(f"gate_uptime_ratio{{{GATE}}}", "{{gate}}"),
            graph=common_model.BigValueGraphMode.AREA,
            colour=common_model.BigValueColorMode.VALUE,
        )
        .unit("percentunit")
        .decimals(2)
        .min(0)
        .max(1)
        .thresholds(thresholds("red", (0.99, "orange"), (0.999, "green")))
    )


def _timestamp_stat(panel_id: int, title: str, metric: str, description: str) -> stat.Panel:
    return stat_panel(
        panel_id,
        title,
        description,
        query(f"{metric}{{{GATE}}} * 1000", "{{gate}}", instant=True),
        graph=common_model.BigValueGraphMode.NONE,
        colour=common_model.BigValueColorMode.NONE,
    ).unit("dateTimeFromNow")


def _info_table() -> table.Panel:
    return (
        panel(
            table.Panel().show_header(True),
            5,
            "Gate",
            "Where the gate sits in the plan: title, team, phase, step, tier, and the exporter that probes it.",
        )
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
        timeseries_panel(
            6,
            "Value against threshold",
            "The gate's primary measurement and the number of its first condition, in base units "
            "(seconds, ratios 0..1, bytes).",
            query(f"gate_value{{{GATE}}}", "value", "A"),
            query(f"gate_threshold{{{GATE}}}", "threshold", "B"),
            unit="short",
            span=12,
            height=9,
            minimum=None,
        )
        .line_interpolation(common_model.LineInterpolation.STEP_AFTER)
        .override_by_name(
            "threshold",
            override(
                color={"mode": "fixed", "fixedColor": "red"}, custom__lineStyle={"fill": "dash", "dash": [10, 10]}
            ),
        )
    )


def _pass_history() -> statetimeline.Panel:
    return (
        status_timeline(
            7,
            "Pass history",
            "The gate's status over the time range: green PASS, red FAIL, orange ERROR; gaps are pending or absent.",
            GATE,
            "{{gate}}",
        )
        .height(9)
        .span(12)
    )


def _evaluation_duration() -> timeseries.Panel:
    return timeseries_panel(
        8,
        "Evaluation duration",
        "How long each evaluation of the gate took (the probe's own time, timeouts included).",
        query(f"gate_evaluation_duration_seconds{{{GATE}}}", "duration"),
        unit="s",
        span=12,
    )


def _evaluations_by_result() -> timeseries.Panel:
    built = timeseries_panel(
        9,
        "Evaluations by result",
        "Evaluations per second of the gate, split into pass, fail and error.",
        query(f"sum by (result) (rate(gate_evaluations_total{{{GATE}}}[$__rate_interval]))", "{{result}}"),
        unit="ops",
        span=12,
    )
    return fixed_colours(built.stacking(STACKED).fill_opacity(30), RESULT_COLOURS)
