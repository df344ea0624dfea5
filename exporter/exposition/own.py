"""The tail of /metrics: the exporter's own metrics, from prometheus_client collectors.

Gate series have their own incremental renderer (gates.py); everything else the exporter says
about itself (runtime, store, listener, process) comes from collectors on one registry, rendered
by prometheus_client after the gate series, plus the exposition's own render time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics


class ScrapeDuration:
    """qualitygate_scrape_duration_seconds: how long the previous /metrics answer took to render."""

    def __init__(self, seconds: Callable[[], float]):
        self._seconds = seconds

    def collect(self) -> Iterator[Metric]:
        """The one gauge."""
        yield GaugeMetricFamily("qualitygate_scrape_duration_seconds",
                                "How long rendering the previous /metrics answer took.", value=self._seconds())


class Delegate:
    """Another registry's collectors, as one collector."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        """What the other registry collects."""
        return self._registry.collect()


def tail_registry(registry: CollectorRegistry | None, seconds: Callable[[], float]) -> CollectorRegistry | None:
    """The registry rendered after the gate series: the render time, then `registry`'s collectors."""
    if registry is None:
        return None
    tail = CollectorRegistry()
    tail.register(ScrapeDuration(seconds))
    tail.register(Delegate(registry))
    return tail


def render_tail(registry: CollectorRegistry | None, openmetrics: bool) -> bytes:
    """The registry in the text format or OpenMetrics (which ends the whole answer with # EOF)."""
    if registry is None:
        return b"# EOF\n" if openmetrics else b""
    return generate_openmetrics(registry) if openmetrics else generate_latest(registry)
