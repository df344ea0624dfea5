"""The probe kinds, one module each, named in one registry (as blackbox_exporter's prober map)."""

from __future__ import annotations

from exporter.probes import command, coverage, file, http, json_file, junit, manual, promql, tcp, uptime
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind

KINDS: dict[str, ProbeKind] = {
    m.KIND.name: m.KIND
    for m in (http, tcp, command, promql, coverage, junit, json_file, file, uptime, manual)
}

__all__ = ["KINDS", "Measurement", "ProbeContext", "ProbeError", "ProbeKind"]
