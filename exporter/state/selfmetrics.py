"""The storage self-metrics as prometheus_client families (Store.collect yields them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from exporter.state.store import Store


def storage_families(store: Store) -> Iterator[Metric]:
    """qualitygate_storage_*: fresh values at every scrape."""
    yield GaugeMetricFamily("qualitygate_storage_up",
                            "1 if the state file is being written; 0 while degraded to memory only.",
                            value=float(store.is_up()))
    yield CounterMetricFamily("qualitygate_storage_errors_total",
                              "Failed storage transactions and opens, rows that cannot be stored, writer crashes.",
                              value=store.errors)
    yield CounterMetricFamily("qualitygate_storage_writes_total",
                              "Queued writes (evaluations, attestations, counts) committed to the state file.",
                              value=store.writes)
    yield CounterMetricFamily("qualitygate_storage_dropped_total",
                              "Queued writes given up on (queue full while the disk failed, at shutdown, "
                              "or a row that cannot be stored).", value=store.dropped)
    yield GaugeMetricFamily("qualitygate_storage_queue_length", "Writes waiting for the storage writer.",
                            value=float(store.pending))
