"""/metrics: the Prometheus text format (and OpenMetrics, and gzip), rendered incrementally and cached.

A scrape of 10,000 gates must cost milliseconds, not the seconds a registry of labelled metrics
takes (bench/, docs/performance.md). So:

- every gate has a fixed position (config order) and a label block rendered once per config;
- an evaluation stores only the sample values that changed (as bytes) and marks dirty the pieces
  they fall in; the static families (threshold, interval, objective, info) are rendered once
  per config;
- each family's samples are cut into pieces of CHUNK gates; a piece's deflate block (raw
  deflate ending in a sync flush, as pigz does), CRC-32 and size are kept until one of its gates
  changes, so a gzip scrape concatenates kept blocks into one valid gzip member and compresses
  only the changed pieces and the small tail;
- changed pieces are rendered ahead, in the background, once their gates are quiet;
- the aggregate families are counters kept up to date when a gate's status changes;
- only the tail (self metrics and the default registry's process metrics) is rendered per scrape.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry

from exporter.config import units
from exporter.config.model import TIERS, Config, Gate
from exporter.engine.evaluate import takes_evidence
from exporter.exposition.blobs import Blob, gzip_member
from exporter.exposition.own import render_tail, tail_registry
from exporter.model import ERROR, OUTCOMES, PASS, PENDING, STATUSES
from exporter.state.memory import GateState, State

if TYPE_CHECKING:
    from exporter.engine.runtime import Runtime

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CHUNK = 64  # gates per cached piece: small enough that a few evaluations dirty little, large enough to compress
# Changed pieces are rendered and compressed in the background once their gates have been quiet for
# QUIET seconds (or dirty for MAX_DIRTY), in steps of at most SWEEP_BUDGET seconds. The scheduler runs
# neighbouring gates together, so a piece changes in one short burst per interval and is rendered
# about once per interval: a scrape, however rarely it comes, finds little left to do.
QUIET, MAX_DIRTY, SWEEP_EVERY, SWEEP_BUDGET = 0.5, 5.0, 0.25, 0.005


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


# --- the exposition --------------------------------------------------------------------------------

class Exposition:
    """Keeps rendered per-gate lines current and renders a whole scrape on demand."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY):
        self.last_render_seconds = 0.0
        self._tail_registry = tail_registry(registry, lambda: self.last_render_seconds)
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._headers = {om: [Blob(f.header(om).encode()) for f in GATE_FAMILIES] for om in (False, True)}
        self.set_trackers([])

    def set_trackers(self, trackers: list[tuple[Config, State]]) -> None:
        """Rebuild every gate's lines for a new set of configs (start and reload)."""
        self._trackers = list(trackers)
        objectives: dict[tuple[str, str], float] = {}
        for config, _ in self._trackers:
            for gid, ratio in config.objectives().items():
                objectives[(config.tracker, gid)] = ratio
        gates = [g for config, _ in self._trackers for g in config.gates]
        n = len(gates)
        self._pos = {(g.tracker, g.id): i for i, g in enumerate(gates)}
        self._labels = [gate_labels(g).encode() for g in gates]
        self._outside = [takes_evidence(g) for g in gates]  # gates with the evidence series
        # Per family and gate: the sample's value as written (b"": no sample). Lines are rendered
        # per piece from these (a whole line per gate would take 10x the memory).
        self._vals: list[list[bytes]] = [[] if fam in _STATIC else [b""] * n for fam in range(len(GATE_FAMILIES))]
        self._pieces: list[list[Blob | None]] = [[None] * ((n + CHUNK - 1) // CHUNK) for _ in GATE_FAMILIES]
        self._sections: dict[tuple[int, bool], Blob] = {}  # (family, openmetrics) -> header + pieces
        self._bodies: dict[bool, Blob] = {}  # openmetrics -> every section and the aggregates
        self._aggregates: dict[bool, Blob] = {}
        self._dirty_chunks: dict[int, list[float]] = {}  # chunk -> [first change, last change] (monotonic)
        self._build_aggregates()
        static: dict[int, list[str]] = {fam: [] for fam in _STATIC}
        for i, gate in enumerate(gates):
            labels = self._labels[i].decode()
            th = gate.threshold
            obj = objectives.get((gate.tracker, gate.id))
            static[_THRESHOLD].append("" if th is None else f"gate_threshold{{{labels}}} {fmt(th)}\n")
            static[_INTERVAL].append(f"gate_interval_seconds{{{labels}}} {fmt(gate.interval)}\n")
            static[_OBJECTIVE].append("" if obj is None else f"gate_objective_ratio{{{labels}}} {fmt(obj)}\n")
            static[_INFO].append(f'gate_info{{{labels},title="{escape(gate.title)}",team="{escape(gate.team)}",'
                                 f'kind="{gate.kind}",unit="{units.family(gate)}"}} 1.0\n')
        for fam, lines in static.items():  # never change until the next config: rendered once, kept as pieces
            self._pieces[fam] = [Blob("".join(lines[c:c + CHUNK]).encode()) for c in range(0, n, CHUNK)]
        now = time.time()
        for config, state in self._trackers:
            for gate in config.gates:
                self.update(gate, state.get(gate.id), config.uptime_window, now)

    def update(self, gate: Gate, st: GateState, uptime_window: float, now: float | None = None) -> None:
        """Re-render one gate's changing lines from its state (called after each evaluation)."""
        i = self._pos.get((gate.tracker, gate.id))
        if i is None:
            return  # not (or no longer) configured: a late result of a removed gate
        r = st.result
        if r is None:
            new = [(_PASSED, b""), (_ERROR, b""), (_VALUE, b""), (_DURATION, b""), (_LAST_EVAL, b"")]
        else:
            v = r.value
            new = [(_PASSED, b"1.0" if r.outcome == PASS else b"0.0"),
                   (_ERROR, b"1.0" if r.outcome == ERROR else b"0.0"),
                   (_VALUE, b"" if v is None else fmt(v).encode()),
                   (_DURATION, fmt(r.duration).encode()),
                   (_LAST_EVAL, fmt(r.started).encode())]
        lp = st.last_pass
        new.append((_LAST_PASS, b"" if lp is None else fmt(lp).encode()))
        c = st.counts
        new.append((_EVALS, " ".join(fmt(c[o]) for o in OUTCOMES).encode()))
        passed, total = st.uptime(uptime_window, time.time() if now is None else now)
        new.append((_UPTIME, b"" if total == 0 else fmt(passed / total).encode()))
        # A result that says nothing of evidence (restored from the state file, a probe error)
        # keeps the series as they were: they tell what the gate was last judged on.
        if self._outside[i] and r is not None and (r.awaiting or r.evidence is not None):
            ev = r.evidence
            new.append((_AWAITING, b"1.0" if r.awaiting else b"0.0"))
            new.append((_EV_AT, b"" if ev is None else fmt(ev.at).encode()))
            new.append((_EV_EXPIRY, b"" if ev is None or ev.expires_at is None else fmt(ev.expires_at).encode()))
        chunk = i // CHUNK
        changed = False
        for fam, value in new:
            vals = self._vals[fam]
            if vals[i] != value:
                vals[i] = value
                self._dirty(fam, chunk)
                changed = True
        if changed:
            self._note_change(chunk)
        status = st.status
        old = self._status[i]
        if status != old:
            self._status[i] = status
            self._count(i, old, -1)
            self._count(i, status, +1)
            self._aggregates.clear()
            self._bodies.clear()

    def _note_change(self, chunk: int) -> None:
        now = time.monotonic()
        times = self._dirty_chunks.get(chunk)
        if times is None:
            self._dirty_chunks[chunk] = [now, now]
        else:
            times[1] = now
        if self._sweep_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no event loop (a script or test): pieces are rendered at the next scrape
            self._sweep_timer = loop.call_later(SWEEP_EVERY, self._sweep)

    def _sweep(self) -> None:
        """Render and compress the pieces of quiet changed chunks, for a few milliseconds at most."""
        self._sweep_timer = None
        now, t0 = time.monotonic(), time.perf_counter()
        for chunk, (first, last) in list(self._dirty_chunks.items()):
            if now - last < QUIET and now - first < MAX_DIRTY:
                continue
            for fam in _DYNAMIC:
                pieces = self._pieces[fam]
                if chunk < len(pieces):
                    piece = pieces[chunk]
                    if piece is None:
                        piece = pieces[chunk] = Blob(source=functools.partial(self._render_piece, fam, chunk))
                    piece.z  # noqa: B018 - computes and keeps the deflate block
            del self._dirty_chunks[chunk]
            if time.perf_counter() - t0 > SWEEP_BUDGET:
                break
        if self._dirty_chunks:
            self._sweep_timer = asyncio.get_running_loop().call_later(SWEEP_EVERY, self._sweep)

    def _dirty(self, fam: int, chunk: int) -> None:
        if self._pieces[fam][chunk] is not None:
            self._pieces[fam][chunk] = None
            self._sections.pop((fam, False), None)
            self._sections.pop((fam, True), None)
            self._bodies.clear()

    # --- rendering ---------------------------------------------------------------------------

    def render(self, openmetrics: bool = False, gzip: bool = False) -> bytes:
        """A whole scrape: the text format (or OpenMetrics), gzip-compressed if asked."""
        t0 = time.perf_counter()
        body = self._body(openmetrics)
        tail = self._tail(openmetrics)
        out = gzip_member(body, tail) if gzip else b"".join([*body.leaves(), tail])
        self.last_render_seconds = time.perf_counter() - t0
        return out

    def _body(self, om: bool) -> Blob:
        body = self._bodies.get(om)
        if body is None:
            parts = [self._section(fam, om) for fam in range(len(GATE_FAMILIES))]
            parts.append(self._aggregate_blob(om))
            body = self._bodies[om] = Blob(parts=parts)
        return body

    def _section(self, fam: int, om: bool) -> Blob:
        section = self._sections.get((fam, om))
        if section is None:
            pieces = self._pieces[fam]
            for c, piece in enumerate(pieces):
                if piece is None:
                    pieces[c] = Blob(source=functools.partial(self._render_piece, fam, c))
            section = self._sections[(fam, om)] = Blob(parts=[self._headers[om][fam], *pieces])  # type: ignore[list-item]
        return section

    def _render_piece(self, fam: int, chunk: int) -> bytes:
        """The lines of one family for one chunk of gates."""
        vals, labels = self._vals[fam], self._labels
        prefix = _PREFIX[fam]
        out: list[bytes] = []
        for i in range(chunk * CHUNK, min(len(labels), (chunk + 1) * CHUNK)):
            v = vals[i]
            if not v:
                continue
            if fam == _EVALS:
                for suffix, count in zip(_RESULT_SUFFIX, v.split(), strict=True):
                    out += (prefix, labels[i], suffix, count, b"\n")
            else:
                out += (prefix, labels[i], b"} ", v, b"\n")
        return b"".join(out)

    def _tail(self, om: bool) -> bytes:
        return render_tail(self._tail_registry, om)

    # --- aggregates ----------------------------------------------------------------------------

    def _build_aggregates(self) -> None:
        """Index every gate's step, phase and tracker, and count statuses from scratch."""
        n = len(self._labels)
        self._status: list[str] = [PENDING] * n
        self._steps: list[tuple[str, int]] = []  # (rendered labels, gates) per step with gates
        self._phases: list[tuple[str, int]] = []
        self._tracker_labels: list[str] = []
        self._step_of = [-1] * n  # -1: a gate outside every step (not counted, as before)
        self._phase_of = [-1] * n
        self._tracker_of = [-1] * n
        self._tier_of = [""] * n
        for t, (config, _) in enumerate(self._trackers):
            tl = escape(config.tracker)
            self._tracker_labels.append(tl)
            for phase in config.phases:
                p = escape(phase.id)
                in_phase = 0
                for step in phase.steps:
                    if not step.gates:
                        continue
                    for g in step.gates:
                        i = self._pos[(config.tracker, g.id)]
                        self._step_of[i], self._phase_of[i], self._tracker_of[i], self._tier_of[i] = (
                            len(self._steps), len(self._phases), t, g.tier)
                    in_phase += len(step.gates)
                    self._steps.append((f'tracker="{tl}",phase="{p}",step="{escape(step.id)}"', len(step.gates)))
                if in_phase:
                    self._phases.append((f'tracker="{tl}",phase="{p}"', in_phase))
        self._step_pass = [0] * len(self._steps)
        self._phase_pass = [0] * len(self._phases)
        self._tally = [{(tier, s): 0 for tier in TIERS for s in STATUSES} for _ in self._trackers]
        for i in range(n):
            self._count(i, PENDING, +1)

    def _count(self, i: int, status: str, delta: int) -> None:
        if self._tracker_of[i] < 0:
            return
        if status == PASS:
            self._step_pass[self._step_of[i]] += delta
            self._phase_pass[self._phase_of[i]] += delta
        self._tally[self._tracker_of[i]][(self._tier_of[i], status)] += delta

    def _aggregate_blob(self, om: bool) -> Blob:
        blob = self._aggregates.get(om)
        if blob is None:
            out = [STEP.header(om)]
            out += [f"step_completion_ratio{{{labels}}} {fmt(self._step_pass[k] / n)}\n"
                    for k, (labels, n) in enumerate(self._steps)]
            out.append(PHASE.header(om))
            out += [f"phase_completion_ratio{{{labels}}} {fmt(self._phase_pass[k] / n)}\n"
                    for k, (labels, n) in enumerate(self._phases)]
            out.append(TRACKER.header(om))
            for t, tl in enumerate(self._tracker_labels):
                tally = self._tally[t]
                total = sum(tally.values())
                if total:
                    passed = sum(n for (_, s), n in tally.items() if s == PASS)
                    out.append(f'tracker_completion_ratio{{tracker="{tl}"}} {fmt(passed / total)}\n')
            out.append(COUNTS.header(om))
            for t, tl in enumerate(self._tracker_labels):
                out += [f'tracker_gates{{tracker="{tl}",tier="{tier}",status="{s}"}} {fmt(n)}\n'
                        for (tier, s), n in self._tally[t].items()]
            blob = self._aggregates[om] = Blob("".join(out).encode())
        return blob


def exposition_for(runtime: Runtime) -> Exposition:
    """The runtime's exposition: attached on first use, its tail the runtime's own-metrics registry."""
    for view in runtime.views:
        if isinstance(view, Exposition):
            return view
    expo = Exposition(registry=runtime.registry)
    runtime.attach(expo)
    return expo

