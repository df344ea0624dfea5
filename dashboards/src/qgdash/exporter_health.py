"""Quality gates / Exporter: the exporter's own health (throughput, lag, reloads, process)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
from grafana_foundation_sdk.models import common as common_model

from qgdash.common import (
    DATASOURCE,
    GATES,
    LAST,
    LEGEND_LIST,
    STACKED,
    TRACKER,
    UID_EXPORTER,
    UID_GATE_DETAIL,
    UID_OVERVIEW,
    base,
    link_to,
    override,
    query,
    rename,
    thresholds,
    value_mappings,
    variables,
)

INSTANCE = 'instance=~"$instance"'
# process_* series come from every Python or Go process Prometheus scrapes: keep the exporters'.
OURS = "and on (job, instance) qualitygate_build_info"
RESULT_COLOURS = {"pass": "green", "fail": "red", "error": "orange"}
STATUS_COLOURS = {"pass": "green", "fail": "red", "error": "orange", "pending": "blue"}


def build() -> dashboard.Dashboard:
    """The exporter health dashboard."""
    board = base(
        "Quality gates / Exporter",
        UID_EXPORTER,
        "The qualitygate exporter's own health: evaluation throughput, scheduler lag, scrape cost, reloads, process.",
    )
    for variable in variables(instance=True):
        board = board.with_variable(variable)
    board = board.link(link_to(UID_OVERVIEW, "Overview", "Every gate of the tracker"))
    board = board.link(link_to(UID_GATE_DETAIL, "Gate detail", "One gate's value, threshold and history"))
    for panel in panels():
        board = board.with_panel(panel)
    return board


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
    return (
        stat.Panel()
        .id(1)
        .title("Exporter up")
        .description("Whether Prometheus's last scrape of each exporter instance succeeded.")
        .datasource(DATASOURCE)
        .with_target(query(f"up{{{INSTANCE}}}", "{{instance}}"))
        .mappings(value_mappings({0: ("DOWN", "red"), 1: ("UP", "green")}))
        .thresholds(thresholds("red", (1, "green")))
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.NONE)
        .color_mode(common_model.BigValueColorMode.BACKGROUND)
        .height(5)
        .span(6)
    )


def _reload_stat() -> stat.Panel:
    return (
        stat.Panel()
        .id(2)
        .title("Config reload")
        .description("Whether the last configuration (re)load succeeded; a rejected config keeps the old one running.")
        .datasource(DATASOURCE)
        .with_target(query(f"qualitygate_config_last_reload_successful{{{INSTANCE}}}", "{{instance}}"))
        .mappings(value_mappings({0: ("FAILED", "red"), 1: ("OK", "green")}))
        .thresholds(thresholds("red", (1, "green")))
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.NONE)
        .color_mode(common_model.BigValueColorMode.BACKGROUND)
        .height(5)
        .span(6)
    )


def _reload_time_stat() -> stat.Panel:
    return (
        stat.Panel()
        .id(3)
        .title("Last successful reload")
        .description("When the configuration was last loaded successfully.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"qualitygate_config_last_reload_success_timestamp_seconds{{{INSTANCE}}} * 1000",
                "{{instance}}",
                instant=True,
            )
        )
        .unit("dateTimeFromNow")
        .reduce_options(LAST)
        .graph_mode(common_model.BigValueGraphMode.NONE)
        .color_mode(common_model.BigValueColorMode.NONE)
        .height(5)
        .span(6)
    )


def _build_table() -> table.Panel:
    return (
        table.Panel()
        .show_header(True)
        .id(4)
        .title("Build")
        .description("Version of each exporter instance and the Python it runs on.")
        .datasource(DATASOURCE)
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
    panel = (
        timeseries.Panel()
        .id(5)
        .title("Evaluations per second by result")
        .description("Gate evaluations per second across the selected gates, split into pass, fail and error.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"sum by (result) (rate(gate_evaluations_total{{{GATES}, {INSTANCE}}}[$__rate_interval]))", "{{result}}"
            )
        )
        .unit("ops")
        .min(0)
        .stacking(STACKED)
        .fill_opacity(30)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )
    for result, colour in RESULT_COLOURS.items():
        panel = panel.override_by_name(result, override(color={"mode": "fixed", "fixedColor": colour}))
    return panel


def _gates_by_status() -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(6)
        .title("Gates by status")
        .description(
            "How many gates pass, fail, error or are still pending (not yet evaluated), by the exporter's count."
        )
        .datasource(DATASOURCE)
        .with_target(query(f'sum by (status) (tracker_gates{{{TRACKER}, tier=~"$tier", {INSTANCE}}})', "{{status}}"))
        .unit("none")
        .min(0)
        .stacking(STACKED)
        .fill_opacity(30)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )
    for status, colour in STATUS_COLOURS.items():
        panel = panel.override_by_name(status, override(color={"mode": "fixed", "fixedColor": colour}))
    return panel


def _scheduler_lag() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(7)
        .title("Scheduler lag")
        .description(
            "p99 over the last minute of how late evaluations start against their schedule; rising lag means an overloaded exporter."
        )
        .datasource(DATASOURCE)
        .with_target(query(f"qualitygate_scheduler_lag_seconds{{{INSTANCE}}}", "{{instance}}"))
        .unit("s")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )


def _scrape_duration() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(8)
        .title("Scrape duration")
        .description("Time the exporter spends rendering /metrics, and the whole scrape as Prometheus sees it.")
        .datasource(DATASOURCE)
        .with_target(query(f"qualitygate_scrape_duration_seconds{{{INSTANCE}}}", "render {{instance}}", "A"))
        .with_target(query(f"scrape_duration_seconds{{{INSTANCE}}} {OURS}", "scrape {{instance}}", "B"))
        .unit("s")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(12)
    )


def _cpu() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(9)
        .title("Process CPU")
        .description("CPU time the exporter process uses per second (100% is one full core).")
        .datasource(DATASOURCE)
        .with_target(query(f"rate(process_cpu_seconds_total{{{INSTANCE}}}[$__rate_interval]) {OURS}", "{{instance}}"))
        .unit("percentunit")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(8)
    )


def _memory() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(10)
        .title("Process memory")
        .description("Resident memory of the exporter process.")
        .datasource(DATASOURCE)
        .with_target(query(f"process_resident_memory_bytes{{{INSTANCE}}} {OURS}", "{{instance}}"))
        .unit("bytes")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(8)
    )


def _open_fds() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .id(11)
        .title("Open file descriptors")
        .description("File descriptors the exporter process holds open (sockets, files, the state database).")
        .datasource(DATASOURCE)
        .with_target(query(f"process_open_fds{{{INSTANCE}}} {OURS}", "{{instance}}"))
        .unit("none")
        .min(0)
        .legend(LEGEND_LIST)
        .height(8)
        .span(8)
    )
