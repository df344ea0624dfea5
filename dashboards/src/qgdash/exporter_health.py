"""Quality gates / Exporter: the exporter's own health (throughput, lag, reloads, process)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.models import common as common_model

from qgdash.common import (
    GATES,
    RESULT_COLOURS,
    STACKED,
    TRACKER,
    UID_EXPORTER,
    UID_GATE_DETAIL,
    UID_OVERVIEW,
    compose,
    fixed_colours,
    link_to,
    panel,
    query,
    rename,
    stat_panel,
    thresholds,
    timeseries_panel,
    value_mappings,
    variables,
)

INSTANCE = 'instance=~"$instance"'
# process_* series come from every Python or Go process Prometheus scrapes: keep the exporters'.
OURS = "and on (job, instance) qualitygate_build_info"
STATUS_COLOURS = {**RESULT_COLOURS, "pending": "blue"}
NO_GRAPH = common_model.BigValueGraphMode.NONE


def build() -> dashboard.Dashboard:
    """The exporter health dashboard."""
    return compose(
        "Quality gates / Exporter",
        UID_EXPORTER,
        "The qualitygate exporter's own health: evaluation throughput, scheduler lag, scrape cost, reloads, process.",
        variables=variables(instance=True),
        links=[link_to(UID_OVERVIEW, "Overview"), link_to(UID_GATE_DETAIL, "Gate detail")],
        panels=panels(),
    )


def panels() -> list[object]:
    """The exporter dashboard's panels, top to bottom."""
    return [
        _up_stat(),
        _reload_stat(),
        _reload_time_stat(),
        _build_table(),
        _evaluations_rate(),
        _gates_by_status(),
        _scheduler_lag(),
        _scrape_duration(),
        _cpu(),
        _memory(),
        _open_fds(),
    ]


def _up_stat() -> stat.Panel:
    return _yes_no_stat(
        1, "Exporter up", "Whether Prometheus's last scrape of each exporter instance succeeded.", "up", "UP", "DOWN"
    )


def _reload_stat() -> stat.Panel:
    return _yes_no_stat(
        2,
        "Config reload",
        "Whether the last configuration (re)load succeeded; a rejected config keeps the old one running.",
        "qualitygate_config_last_reload_successful",
        "OK",
        "FAILED",
    )


def _yes_no_stat(panel_id: int, title: str, description: str, metric: str, yes: str, no: str) -> stat.Panel:
    """A per-instance 0/1 series as a green `yes` or a red `no`."""
    return (
        stat_panel(
            panel_id,
            title,
            description,
            query(f"{metric}{{{INSTANCE}}}", "{{instance}}"),
            graph=NO_GRAPH,
            colour=common_model.BigValueColorMode.BACKGROUND,
        )
        .mappings(value_mappings({0: (no, "red"), 1: (yes, "green")}))
        .thresholds(thresholds("red", (1, "green")))
    )


def _reload_time_stat() -> stat.Panel:
    return stat_panel(
        3,
        "Last successful reload",
        "When the configuration was last loaded successfully.",
        query(
            f"qualitygate_config_last_reload_success_timestamp_seconds{{{INSTANCE}}} * 1000",
            "{{instance}}",
            instant=True,
        ),
        graph=NO_GRAPH,
        colour=common_model.BigValueColorMode.NONE,
    ).unit("dateTimeFromNow")


def _build_table() -> table.Panel:
    return (
        panel(
            table.Panel().show_header(True),
            4,
            "Build",
            "Version of each exporter instance and the Python it runs on.",
        )
        .with_target(query(f"qualitygate_build_info{{{INSTANCE}}}", ref="A", instant=True, table=True))
        .with_transformation(
            rename(
                {"instance": "Exporter", "version": "Version", "python_version": "Python"},
                hide=["Time", "Value", "__name__", "job"],
                order=["Exporter", "Version", "Python"],
            )
        )
        .unit("none")
        .height(5)
        .span(6)
    )


def _evaluations_rate() -> timeseries.Panel:
    rate = f"sum by (result) (rate(gate_evaluations_total{{{GATES}, {INSTANCE}}}[$__rate_interval]))"
    built = timeseries_panel(
        5,
        "Evaluations per second by result",
        "Gate evaluations per second across the selected gates, split into pass, fail and error.",
        query(rate, "{{result}}"),
        unit="ops",
        span=12,
    )
    return fixed_colours(built.stacking(STACKED).fill_opacity(30), RESULT_COLOURS)


def _gates_by_status() -> timeseries.Panel:
    built = timeseries_panel(
        6,
        "Gates by status",
        "How many gates pass, fail, error or are still pending (not yet evaluated), by the exporter's count.",
        query(f'sum by (status) (tracker_gates{{{TRACKER}, tier=~"$tier", {INSTANCE}}})', "{{status}}"),
        unit="none",
        span=12,
    )
    return fixed_colours(built.stacking(STACKED).fill_opacity(30), STATUS_COLOURS)


def _scheduler_lag() -> timeseries.Panel:
    return timeseries_panel(
        7,
        "Scheduler lag",
        "p99 over the last minute of how late evaluations start against their schedule; "
        "rising lag means an overloaded exporter.",
        query(f"qualitygate_scheduler_lag_seconds{{{INSTANCE}}}", "{{instance}}"),
        unit="s",
        span=12,
    )


def _scrape_duration() -> timeseries.Panel:
    return timeseries_panel(
        8,
        "Scrape duration",
        "Time the exporter spends rendering /metrics, and the whole scrape as Prometheus sees it.",
        query(f"qualitygate_scrape_duration_seconds{{{INSTANCE}}}", "render {{instance}}", "A"),
        query(f"scrape_duration_seconds{{{INSTANCE}}} {OURS}", "scrape {{instance}}", "B"),
        unit="s",
        span=12,
    )


def _cpu() -> timeseries.Panel:
    return timeseries_panel(
        9,
        "Process CPU",
        "CPU time the exporter process uses per second (100% is one full core).",
        query(f"rate(process_cpu_seconds_total{{{INSTANCE}}}[$__rate_interval]) {OURS}", "{{instance}}"),
        unit="percentunit",
        span=8,
    )


def _memory() -> timeseries.Panel:
    return timeseries_panel(
        10,
        "Process memory",
        "Resident memory of the exporter process.",
        query(f"process_resident_memory_bytes{{{INSTANCE}}} {OURS}", "{{instance}}"),
        unit="bytes",
        span=8,
    )


def _open_fds() -> timeseries.Panel:
    return timeseries_panel(
        11,
        "Open file descriptors",
        "File descriptors the exporter process holds open (sockets, files, the state database).",
        query(f"process_open_fds{{{INSTANCE}}} {OURS}", "{{instance}}"),
        unit="none",
        span=8,
    )
