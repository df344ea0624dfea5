"""qualitygate-exporter: turn a tracker's quality gates into live, verified Prometheus metrics."""

__version__ = "0.1.0"
