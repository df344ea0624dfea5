"""Unit families of gate values, as the exporter labels them (gate_info{unit}), and Grafana's unit for each.

One table column cannot carry a unit per row in Grafana, so tables that show values give each family its
own columns: a query per family keeps only the gates whose gate_info has that unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from qgdash.common import GATES

GATE_LABELS = "tracker, phase, step, gate, tier"


@dataclass(frozen=True)
class UnitFamily:
    """One value of gate_info's `unit` label and how the dashboards show it."""

    unit: str  # gate_info's label value (exporter/config/units.py FAMILIES)
    grafana_unit: str  # Grafana's unit id: values are in base units (ratio 0..1, seconds, bytes)
    column: str  # the table column's name
    value_ref: str  # refIds of the per-family gate_value and gate_threshold queries
    threshold_ref: str

    def select(self, metric: str) -> str:
        """`metric` (gate_value, gate_threshold) of the selected gates whose unit is this family."""
        # `and on (tracker, gate)`: gate_info has more labels (title, team, kind, unit) than the value series.
        info = f'gate_info{{{GATES}, unit="{self.unit}"}}'
        return f"max by ({GATE_LABELS}) ({metric}{{{GATES}}} and on (tracker, gate) {info})"


UNIT_FAMILIES = (
    UnitFamily("percent", "percentunit", "Percent", "C", "D"),
    UnitFamily("seconds", "s", "Time", "E", "F"),
    UnitFamily("bytes", "bytes", "Size", "G", "H"),
    UnitFamily("number", "short", "Number", "I", "J"),
)
