"""What /metrics says of the gates: the families, their order and help, and how values and labels are written.

The renderer (frame.py) and the exposition (gates.py) use these; the rules lint, the dashboards and
the benchmarks check against CONTRACT_METRICS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from exporter.config.model import Gate
from exporter.model import OUTCOMES

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@dataclass(frozen=True)
class Family:
    """A metric family: name, type and help."""

    name: str
    type: str
    help: str

    def header(self, openmetrics: bool) -> str:
        """The HELP and TYPE lines (OpenMetrics names a counter without its _total suffix)."""
        name = self.name[:-6] if openmetrics and self.type == "counter" and self.name.endswith("_total") else self.name
        return f"# HELP {name} {self.help}\n# TYPE {name} {self.type}\n"


# Per-gate families, in exposition order.
GATE_FAMILIES = (
    Family("gate_passed", "gauge", "1 if the gate's last evaluation passed, 0 if it failed or erred."),
    Family("gate_probe_error", "gauge", "1 if the gate's last evaluation could not measure (error outcome)."),
    Family("gate_value", "gauge", "The gate's primary measurement in base units (seconds, ratio 0..1, bytes)."),
    Family("gate_threshold", "gauge", "The number of the gate's first expect condition on value."),
    Family("gate_evaluation_duration_seconds", "gauge", "How long the gate's last evaluation took."),
    Family("gate_interval_seconds", "gauge", "The gate's configured evaluation interval."),
    Family("gate_objective_ratio", "gauge", "The uptime objective set on this gate by an uptime gate observing it."),
    Family("gate_last_evaluation_timestamp_seconds", "gauge", "When the gate was last evaluated (Unix time)."),
    Family("gate_last_pass_timestamp_seconds", "gauge", "When the gate last passed (Unix time)."),
    Family("gate_evaluations_total", "counter", "Gate evaluations by result."),
    Family("gate_uptime_ratio", "gauge",
           "Fraction of the gate's evaluations that passed over the tracker's uptime_window."),
    # Only gates evidenced from outside (manual, push) have these series.
    Family("gate_awaiting_evidence", "gauge",
           "1 while a manual or push-sourced gate has never had accepted evidence, 0 once it has."),
    Family("gate_evidence_timestamp_seconds", "gauge",
           "When the evidence the gate was last judged on was made (push or attestation time, Unix time)."),
    Family("gate_evidence_expiry_timestamp_seconds", "gauge",
           "When the evidence the gate was last judged on lapses: its time plus the gate's max_age (Unix time)."),
    Family("gate_info", "gauge", "Human names, probe kind and value unit (percent, seconds, bytes, number) of a gate; "
                                 "always 1."),
)
(_PASSED, _ERROR, _VALUE, _THRESHOLD, _DURATION, _INTERVAL, _OBJECTIVE, _LAST_EVAL, _LAST_PASS, _EVALS, _UPTIME,
 _AWAITING, _EV_AT, _EV_EXPIRY, _INFO) = range(len(GATE_FAMILIES))
_STATIC = (_THRESHOLD, _INTERVAL, _OBJECTIVE, _INFO)  # rendered from the config alone
_DYNAMIC = tuple(fam for fam in range(len(GATE_FAMILIES)) if fam not in _STATIC)
_PREFIX = [f"{f.name}{{".encode() for f in GATE_FAMILIES]
_RESULT_SUFFIX = [f',result="{o}"}} '.encode() for o in OUTCOMES]
STEP = Family("step_completion_ratio", "gauge", "Fraction of the step's gates that pass.")
PHASE = Family("phase_completion_ratio", "gauge", "Fraction of the phase's gates that pass.")
TRACKER = Family("tracker_completion_ratio", "gauge", "Fraction of all the tracker's gates that pass.")
COUNTS = Family("tracker_gates", "gauge", "Number of gates by tier and status.")

# Every metric name the contract promises (CONTRACT.md, "Metrics"): the rules lint and the
# benchmarks check against this one list, and tests/test_e2e_serve.py checks a real scrape has them
# (the EVIDENCE_METRICS only where a gate is evidenced from outside and, for the times, has evidence).
EVIDENCE_METRICS = tuple(GATE_FAMILIES[f].name for f in (_AWAITING, _EV_AT, _EV_EXPIRY))
CONTRACT_METRICS = (
    *(f.name for f in GATE_FAMILIES), STEP.name, PHASE.name, TRACKER.name, COUNTS.name,
    "qualitygate_build_info", "qualitygate_config_last_reload_successful",
    "qualitygate_config_last_reload_success_timestamp_seconds",
)


def escape(value: str) -> str:
    """Escape a label value for the text formats."""
    if "\\" not in value and "\n" not in value and '"' not in value:
        return value  # the common case, 10,000s of times per config
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def fmt(value: float) -> str:
    """A sample value as the text formats write it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def gate_labels(gate: Gate) -> str:
    """The label block every per-gate series shares (without braces)."""
    return (f'tracker="{escape(gate.tracker)}",phase="{escape(gate.phase)}",step="{escape(gate.step)}",'
            f'gate="{escape(gate.id)}",tier="{escape(gate.tier)}"')
