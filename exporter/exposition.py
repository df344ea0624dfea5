"""/metrics: the Prometheus text format (and OpenMetrics), rendered incrementally.

Each gate's sample lines are rendered when its state changes (at most once per evaluation), and
kept per metric family in gate order; a scrape only joins the kept lines and renders the few
aggregate series. That keeps a scrape of thousands of gates cheap (see bench/ and issue 7).
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter import __version__
from exporter.config import TIERS, Config, Gate
from exporter.model import ERROR, FAIL, OUTCOMES, PASS, PENDING
from exporter.state import GateState, State

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
    Family("gate_uptime_ratio", "gauge", "Fraction of the gate's evaluations that passed over the tracker's uptime_window."),
    Family("gate_info", "gauge", "Human names of a gate, for dashboards; always 1."),
)
_F = {f.name: f for f in GATE_FAMILIES}
STEP = Family("step_completion_ratio", "gauge", "Fraction of the step's gates that pass.")
PHASE = Family("phase_completion_ratio", "gauge", "Fraction of the phase's gates that pass.")
TRACKER = Family("tracker_completion_ratio", "gauge", "Fraction of all the tracker's gates that pass.")
COUNTS = Family("tracker_gates", "gauge", "Number of gates by tier and status.")


def escape(value: str) -> str:
    """Escape a label value for the text formats."""
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


class Exposition:
    """Keeps rendered per-gate lines current and renders a whole scrape on demand."""

    def __init__(self, extra: Callable[[bool], Iterable[str]] | None = None, registry: CollectorRegistry | None = REGISTRY):
        self._lines: dict[str, dict[tuple[str, str], str]] = {f.name: {} for f in GATE_FAMILIES}
        self._trackers: list[tuple[Config, State]] = []
        self._objectives: dict[tuple[str, str], float] = {}
        self._extra = extra
        self._registry = registry
        self.last_render_seconds = 0.0

    def set_trackers(self, trackers: list[tuple[Config, State]]) -> None:
        """Rebuild every gate's lines for a new set of configs (start and reload)."""
        self._trackers = list(trackers)
        self._lines = {f.name: {} for f in GATE_FAMILIES}
        self._objectives = {}
        for config, state in self._trackers:
            for gid, ratio in config.objectives().items():
                self._objectives[(config.tracker, gid)] = ratio
        for config, state in self._trackers:
            for gate in config.gates:
                self.update(gate, state.get(gate.id), config.uptime_window)

    def update(self, gate: Gate, st: GateState, uptime_window: float, now: float | None = None) -> None:
        """Re-render one gate's lines from its state (called after each evaluation)."""
        key = (gate.tracker, gate.id)
        labels = gate_labels(gate)
        lines = self._lines
        r = st.result

        def put(family: str, line: str | None) -> None:
            if line is None:
                lines[family].pop(key, None)
            else:
                lines[family][key] = line

        if r is None:
            for name in ("gate_passed", "gate_probe_error", "gate_value", "gate_evaluation_duration_seconds",
                         "gate_last_evaluation_timestamp_seconds"):
                put(name, None)
        else:
            put("gate_passed", f"gate_passed{{{labels}}} {1.0 if r.outcome == PASS else 0.0}\n")
            put("gate_probe_error", f"gate_probe_error{{{labels}}} {1.0 if r.outcome == ERROR else 0.0}\n")
            v = r.value
            put("gate_value", None if v is None else f"gate_value{{{labels}}} {fmt(v)}\n")
            put("gate_evaluation_duration_seconds", f"gate_evaluation_duration_seconds{{{labels}}} {fmt(r.duration)}\n")
            put("gate_last_evaluation_timestamp_seconds",
                f"gate_last_evaluation_timestamp_seconds{{{labels}}} {fmt(r.started)}\n")
        th = gate.threshold
        put("gate_threshold", None if th is None else f"gate_threshold{{{labels}}} {fmt(th)}\n")
        put("gate_interval_seconds", f"gate_interval_seconds{{{labels}}} {fmt(gate.interval)}\n")
        obj = self._objectives.get(key)
        put("gate_objective_ratio", None if obj is None else f"gate_objective_ratio{{{labels}}} {fmt(obj)}\n")
        put("gate_last_pass_timestamp_seconds",
            None if st.last_pass is None else f"gate_last_pass_timestamp_seconds{{{labels}}} {fmt(st.last_pass)}\n")
        put("gate_evaluations_total", "".join(
            f'gate_evaluations_total{{{labels},result="{o}"}} {fmt(st.counts[o])}\n' for o in OUTCOMES))
        passed, total = st.uptime(uptime_window, time.time() if now is None else now)
        put("gate_uptime_ratio", None if total == 0 else f"gate_uptime_ratio{{{labels}}} {fmt(passed / total)}\n")
        put("gate_info", f'gate_info{{{labels},title="{escape(gate.title)}",team="{escape(gate.team)}"}} 1.0\n')

    def render(self, openmetrics: bool = False) -> bytes:
        """A whole scrape."""
        t0 = time.perf_counter()
        out: list[str] = []
        for fam in GATE_FAMILIES:
            out.append(fam.header(openmetrics))
            out.extend(self._lines[fam.name].values())
        out.extend(self._aggregates(openmetrics))
        if self._extra:
            out.extend(self._extra(openmetrics))
        body = "".join(out).encode()
        if self._registry is not None:
            if openmetrics:
                body += generate_openmetrics(self._registry)  # ends with "# EOF"
            else:
                body += generate_latest(self._registry)
        elif openmetrics:
            body += b"# EOF\n"
        self.last_render_seconds = time.perf_counter() - t0
        return body

    def _aggregates(self, openmetrics: bool) -> list[str]:
        steps, phases, trackers, counts = [], [], [], []
        for config, state in self._trackers:
            t = escape(config.tracker)
            tally = {(tier, s): 0 for tier in TIERS for s in (PASS, FAIL, ERROR, PENDING)}
            for phase in config.phases:
                p = escape(phase.id)
                phase_pass = phase_total = 0
                for step in phase.steps:
                    passed = 0
                    for g in step.gates:
                        st = state.gates.get(g.id)
                        status = st.status if st else PENDING
                        tally[(g.tier, status)] += 1
                        passed += status == PASS
                    if step.gates:
                        steps.append(f'step_completion_ratio{{tracker="{t}",phase="{p}",step="{escape(step.id)}"}} '
                                     f"{fmt(passed / len(step.gates))}\n")
                    phase_pass += passed
                    phase_total += len(step.gates)
                if phase_total:
                    phases.append(f'phase_completion_ratio{{tracker="{t}",phase="{p}"}} {fmt(phase_pass / phase_total)}\n')
            total = sum(tally.values())
            if total:
                passed_all = sum(n for (_, s), n in tally.items() if s == PASS)
                trackers.append(f'tracker_completion_ratio{{tracker="{t}"}} {fmt(passed_all / total)}\n')
            for (tier, s), n in tally.items():
                counts.append(f'tracker_gates{{tracker="{t}",tier="{tier}",status="{s}"}} {fmt(n)}\n')
        out = [STEP.header(openmetrics), *steps, PHASE.header(openmetrics), *phases,
               TRACKER.header(openmetrics), *trackers, COUNTS.header(openmetrics), *counts]
        return out


def build_info_lines(openmetrics: bool) -> list[str]:
    """qualitygate_build_info."""
    fam = Family("qualitygate_build_info", "gauge", "Version of qualitygate-exporter; always 1.")
    return [fam.header(openmetrics),
            f'qualitygate_build_info{{version="{__version__}",python_version="{platform.python_version()}"}} 1.0\n']


def simple(name: str, type_: str, help_: str, value: float, openmetrics: bool) -> list[str]:
    """A family with one unlabelled sample."""
    return [Family(name, type_, help_).header(openmetrics), f"{name} {fmt(value)}\n"]
