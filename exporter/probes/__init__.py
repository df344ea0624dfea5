"""The probe kinds, one module each, named in one registry (as blackbox_exporter's prober map).

Report kinds (those with `parse_report`, see ProbeKind) take a `path`, `url` or `push` source;
`REPORT_KINDS` names them, for the evidence endpoint: `KINDS[name].parse_report(spec, data, name)`.
"""

from __future__ import annotations

from exporter.probes import command, coverage, file, http, json_file, junit, manual, promql, sarif, tcp, tls, uptime
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind, PushRecord

KINDS: dict[str, ProbeKind] = {
    m.KIND.name: m.KIND
    for m in (http, tcp, tls, command, promql, coverage, junit, json_file, sarif, file, uptime, manual)
}
REPORT_KINDS = tuple(name for name, kind in KINDS.items() if kind.parse_report is not None)

__all__ = ["KINDS", "REPORT_KINDS", "Measurement", "ProbeContext", "ProbeError", "ProbeKind", "PushRecord"]
