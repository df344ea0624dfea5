"""The running exporter's own metrics, as a prometheus_client Collector.

Convention: a component with metrics of its own (the store, the HTTP listener) has a
`collect(self) -> Iterable[Metric]` method, as a prometheus_client Collector does; the runtime's
collector yields its own families and then those of the components it holds, so that a store or
listener attached after start-up is exported without registering anything.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter import __version__

if TYPE_CHECKING:
    from exporter.engine.runtime import Runtime


class Collector(Protocol):
    """What prometheus_client calls a collector."""

    def collect(self) -> Iterable[Metric]:
        """Fresh metric families, per scrape."""
        ...


def build_info() -> Metric:
    """qualitygate_build_info."""
    info = GaugeMetricFamily("qualitygate_build_info", "Version of qualitygate-exporter; always 1.",
                             labels=["version", "python_version"])
    info.add_metric([__version__, platform.python_version()], 1.0)
    return info


class WebInfo:
    """qualitygate_web_info{external_url}: where people reach this exporter, for links from alerts."""

    def __init__(self, external_url: str) -> None:
        self.external_url = external_url

    def collect(self) -> Iterator[Metric]:
        """One series, always 1; external_url is empty when --web.external-url is unset."""
        info = GaugeMetricFamily("qualitygate_web_info", "The --web.external-url; always 1.",
                                 labels=["external_url"])
        info.add_metric([self.external_url], 1.0)
        yield info


class RuntimeCollector:
    """Reload, scheduler, shard, supervision and fault metrics of one Runtime, and its components'."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Every family of the runtime's own metrics."""
        rt = self._runtime
        yield build_info()
        yield GaugeMetricFamily("qualitygate_config_last_reload_successful",
                                "1 if the last config (re)load succeeded.", value=1.0 if rt.reload_ok else 0.0)
        yield GaugeMetricFamily("qualitygate_config_last_reload_success_timestamp_seconds",
                                "When the config was last loaded successfully (Unix time).", value=rt.reload_ok_at)
        s = rt.scheduler
        if s is not None:
            yield GaugeMetricFamily("qualitygate_scheduler_lag_seconds",
                                    "p99 of schedule lag (evaluation start minus due time) over the last minute.",
                                    value=s.lag_quantile(0.99))
            yield CounterMetricFamily("qualitygate_evaluations_skipped_total",
                                      "Evaluations not started because the previous one was still running or the "
                                      "scheduler fell behind.", value=s.skipped)
            yield GaugeMetricFamily("qualitygate_evaluations_in_flight", "Evaluations running now.",
                                    value=s.in_flight)
            faults = CounterMetricFamily("qualitygate_evaluation_exceptions_total",
                                         "Unexpected exceptions while evaluating (probe), judging or recording a "
                                         "result; each made that evaluation an error outcome.", labels=["stage"])
            for stage, n in sorted(s.faults.counts.items()):
                faults.add_metric([stage], n)
            yield faults
        restarts = CounterMetricFamily("qualitygate_task_restarts_total",
                                       "Restarts of a supervised long-lived task after it died.", labels=["task"])
        for task, n in sorted(rt.supervisor.restarts.items()):
            restarts.add_metric([task], n)
        yield restarts
        if rt.shard is not None:
            index, count = rt.shard
            info = GaugeMetricFamily("qualitygate_shard_info", "The shard this exporter evaluates; always 1.",
                                     labels=["index", "count"])
            info.add_metric([str(index), str(count)], 1.0)
            yield info
        yield from rt.foreground.collect()
        for component in (rt.read_timeouts, rt.store):
            if component is not None:
                yield from component.collect()


class DefaultRegistry:
    """The process-wide registry's collectors (process, platform, GC, and any a library added)."""

    def collect(self) -> Iterable[Metric]:
        """What prometheus_client's default registry collects."""
        return REGISTRY.collect()
