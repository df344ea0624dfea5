"""The exposition: /metrics, the gate series and the exporter's own metrics."""
