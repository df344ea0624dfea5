"""Grafana dashboards for qualitygate-exporter, built with grafana-foundation-sdk."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard

from qgdash import exporter_health, gate_detail, overview

# Output file name -> builder. The file names and the uids inside are a public interface:
# provisioned Grafanas and bookmarks point at them.
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "overview.json": overview.build,
    "gate-detail.json": gate_detail.build,
    "exporter.json": exporter_health.build,
}
