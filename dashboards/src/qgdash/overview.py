"""Quality gates / Overview: which gates hold and which do not, at a glance."""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as common_model

from qgdash import evidence
from qgdash.common import (
    GATES,
    LAST,
    MERGE,
    STATUS_MAPPINGS,
    TRACKER,
    UID_EXPORTER,
    UID_GATE_DETAIL,
    UID_OVERVIEW,
    compose,
    count_stat,
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
from qgdash.units import GATE_LABELS, UNIT_FAMILIES

CRITICAL = 'tracker="$tracker", phase=~"$phase", tier="critical"'
BLOCKING = GATES + ', tier=~"critical|important"'

# Completion from gate counts, not from the per-exporter ratio gauges: sums stay right when the
# gates of one tracker are spread over several exporter instances (sharding).
OVERALL = f'sum(tracker_gates{{{TRACKER}, status="pass"}}) / sum(tracker_gates{{{TRACKER}}})'
PER_PHASE = (
    f"(sum by (phase) (gate_passed{{{GATES}}}) or 0 * count by (phase) (gate_info{{{GATES}}}))"
    f" / count by (phase) (gate_info{{{GATES}}})"
)

INFO = f"gate_info{{{GATES}}}"
DETAIL_URL = (
    f"/d/{UID_GATE_DETAIL}?var-datasource=${{datasource}}&var-tracker=${{tracker}}"
    "&var-phase=${__data.fields.phase}&var-tier=${__data.fields.tier}&var-gate=${__data.fields.gate}"
    "&${__url_time_range}"
)


def build() -> dashboard.Dashboard:
    """The overview dashboard."""
    return compose(
        "Quality gates / Overview",
        UID_OVERVIEW,
        "Every quality gate of a tracker: completion, failing and erroring gates, blockers and history.",
        variables=variables(),
        links=[link_to(UID_GATE_DETAIL, "Gate detail"), link_to(UID_EXPORTER, "Exporter")],
        panels=panels(),
        rows=[(evidence.row(), evidence.panels())],
    )


def panels() -> list[object]:
    """The overview's panels, top to bottom."""
    return [
        _completion_stat(),
        _failing_critical_stat(),
        _probe_errors_stat(),
        _phase_bars(),
        _completion_over_time(),
        _gate_table(),
        _blockers_table(),
        _status_timeline(),
    ]


def _completion_stat() -> stat.Panel:
    return (
        stat_panel(
            1,
            "Overall completion",
            "Fraction of all the tracker's gates that pass now (pending gates count as not passing).",
            query(OVERALL, "completion"),
            graph=common_model.BigValueGraphMode.AREA,
            colour=common_model.BigValueColorMode.VALUE,
            span=8,
        )
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(1)
        .thresholds(thresholds("red", (0.5, "orange"), (1, "green")))
    )


def _failing_critical_stat() -> stat.Panel:
    failing = f"count({status_expr(CRITICAL)} == 0) or vector(0)"
    return count_stat(
        2,
        "Failing critical gates",
        "Critical gates whose last evaluation measured a value that misses its expectation "
        "(probe errors are counted separately). Red when above zero.",
        query(failing, "failing"),
        "red",
    )


def _probe_errors_stat() -> stat.Panel:
    return count_stat(
        3,
        "Probe errors",
        "Gates whose last evaluation could not measure anything (file missing, Prometheus "
        "unreachable, command not found...). An error is not a failure: the probe itself is broken.",
        query(f"count(gate_probe_error{{{GATES}}} == 1) or vector(0)", "errors"),
        "orange",
    )


def _phase_bars() -> bargauge.Panel:
    return (
        panel(
            bargauge.Panel(),
            4,
            "Completion per phase",
            "Fraction of each phase's gates (of the selected tiers) that pass now.",
        )
        .with_target(query(PER_PHASE, "{{phase}}", instant=True))
        .unit("percentunit")
        .min(0)
        .max(1)
        .decimals(0)
        .thresholds(thresholds("red", (0.5, "orange"), (1, "green")))
        .reduce_options(LAST)
        .display_mode(common_model.BarGaugeDisplayMode.GRADIENT)
        .orientation(common_model.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .height(9)
        .span(8)
    )


def _completion_over_time() -> timeseries.Panel:
    return (
        timeseries_panel(
            5,
            "Completion over time",
            "Overall completion and each phase's completion over the time range.",
            query(OVERALL, "overall", "A"),
            query(PER_PHASE, "{{phase}}", "B"),
            unit="percentunit",
            span=16,
            height=9,
        )
        .max(1)
        .line_interpolation(common_model.LineInterpolation.STEP_AFTER)
        .fill_opacity(10)
        .override_by_name("overall", override(custom__lineWidth=3, color={"mode": "fixed", "fixedColor": "green"}))
    )


def _gate_table() -> table.Panel:
    columns = {"title": "Title", "team": "Team", "kind": "Kind", "Value #B": "Status"}
    order = ["phase", "step", "gate", "Title", "tier", "Kind", "Status"]
    built = (
        panel(
            table.Panel().show_header(True),
            6,
            "Gates",
            "Every gate with its status (PASS, FAIL or ERROR), its primary measured value and the threshold of its "
            "first condition, each in its own unit: one pair of columns per unit family (percent, time, size, plain "
            "number, from gate_info's unit label); a family no gate has shows no columns. Click a gate for its detail.",
        )
        .with_target(query(f"max by ({GATE_LABELS}, title, team, kind) ({INFO})", ref="A", instant=True, table=True))
        .with_target(query(f"max by ({GATE_LABELS}) ({status_expr(GATES)})", ref="B", instant=True, table=True))
    )
    for family in UNIT_FAMILIES:
        for metric, ref, column in (
            ("gate_value", family.value_ref, family.column),
            ("gate_threshold", family.threshold_ref, f"{family.column} threshold"),
        ):
            built = built.with_target(query(family.select(metric), ref=ref, instant=True, table=True))
            columns[f"Value #{ref}"] = column
            order.append(column)
            built = built.override_by_name(column, override(unit=family.grafana_unit, custom__width=110))
    order.append("Team")
    return (
        built.with_transformation(MERGE)
        .with_transformation(rename(columns, hide=["Time", "tracker", "Value #A"], order=order))
        .unit("short")
        .override_by_name(
            "Status",
            override(mappings=STATUS_MAPPINGS, custom__cellOptions={"type": "color-background"}, custom__width=90),
        )
        .override_by_name(
            "gate",
            override(links=[{"title": "Gate detail", "url": DETAIL_URL}]),
        )
        .sort_by([_sort("Status")])
        .height(12)
        .span(24)
    )


def _blockers_table() -> table.Panel:
    # Claims nobody has evidenced yet are not blockers (as on the status page): the Evidence row lists them.
    awaiting = "on (tracker, phase, step, gate) (gate_awaiting_evidence == 1)"
    stuck = f"on (tracker, phase, step, gate) (gate_passed{{{BLOCKING}}} == 0 unless {awaiting})"
    return (
        panel(
            table.Panel().show_header(True),
            7,
            "Blockers",
            "Critical and important gates that fail or cannot be measured now, with when they last passed; "
            "gates merely awaiting evidence are in the Evidence row. Empty when nothing blocks.",
        )
        .with_target(query(f"(max by ({GATE_LABELS}) ({status_expr(BLOCKING)}) != 1) unless {awaiting}",
                           ref="A", instant=True, table=True))
        .with_target(
            query(
                f"max by ({GATE_LABELS}, title) (gate_info{{{BLOCKING}}}) and {stuck}",
                ref="B",
                instant=True,
                table=True,
            )
        )
        .with_target(
            query(
                f"max by ({GATE_LABELS}) (gate_last_pass_timestamp_seconds{{{BLOCKING}}} > 0) * 1000 and {stuck}",
                ref="C",
                instant=True,
                table=True,
            )
        )
        .with_transformation(MERGE)
        .with_transformation(
            rename(
                {"title": "Title", "Value #A": "Status", "Value #C": "Last pass"},
                hide=["Time", "tracker", "Value #B"],
                order=["tier", "phase", "step", "gate", "Title", "Status", "Last pass"],
            )
        )
        .unit("short")
        .no_value("No blockers")
        .override_by_name(
            "Status", override(mappings=STATUS_MAPPINGS, custom__cellOptions={"type": "color-background"})
        )
        .override_by_name("Last pass", override(unit="dateTimeFromNow"))
        .override_by_name("gate", override(links=[{"title": "Gate detail", "url": DETAIL_URL}]))
        .sort_by([_sort("tier")])
        .height(8)
        .span(24)
    )


def _status_timeline() -> statetimeline.Panel:
    return (
        status_timeline(
            8,
            "Gate status over time",
            "Every gate's status over the time range: green PASS, red FAIL, orange ERROR; gaps are pending or absent.",
            GATES,
            "{{phase}} / {{gate}}",
        )
        .row_height(0.8)
        .height(14)
        .span(24)
    )


def _sort(column: str) -> common.TableSortByFieldState:
    return common.TableSortByFieldState().display_name(column).desc(False)
