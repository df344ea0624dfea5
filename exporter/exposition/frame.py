"""One config's /metrics: every gate's rendered values, cut into cached pieces, and the whole scrape made of them.

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
- changed pieces are rendered ahead (sweep()), once their gates are quiet;
- the aggregate families are counters kept up to date when a gate's status changes.

A frame is built by the steps of build(), a generator: the exposition (gates.py) runs them in
slices of a few milliseconds on the event loop while it serves the previous frame, so that a
reload of 10,000 gates never stalls a scrape (it swaps frames once this one is complete).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator

from exporter.config import units
from exporter.config.model import TIERS, Config, Gate
from exporter.engine.evaluate import takes_evidence
from exporter.exposition.blobs import Blob, gzip_member
from exporter.exposition.families import (
    _AWAITING,
    _DURATION,
    _DYNAMIC,
    _ERROR,
    _EV_AT,
    _EV_EXPIRY,
    _EVALS,
    _INFO,
    _INTERVAL,
    _LAST_EVAL,
    _LAST_PASS,
    _OBJECTIVE,
    _PASSED,
    _PREFIX,
    _RESULT_SUFFIX,
    _STATIC,
    _THRESHOLD,
    _UPTIME,
    _VALUE,
    COUNTS,
    GATE_FAMILIES,
    PHASE,
    STEP,
    TRACKER,
    escape,
    fmt,
    gate_labels,
)
from exporter.model import ERROR, OUTCOMES, PASS, PENDING, STATUSES
from exporter.state.memory import GateState, State

CHUNK = 64  # gates per cached piece: small enough that a few evaluations dirty little, large enough to compress
# Pieces per group: a section is its header and its groups, so a changed piece makes a scrape combine the
# CRCs and sum the sizes of its group and of the section's groups (16 + 10 at 10,000 gates), not of all
# the section's 157 pieces (13 sections of it took a scrape 2-3 ms, profiled in-process).
GROUP = 16
# Changed pieces are rendered and compressed ahead once their gates have been quiet for QUIET seconds
# (or dirty for MAX_DIRTY). The scheduler runs neighbouring gates together, so a piece changes in one
# short burst per interval and is rendered about once per interval: a scrape, however rarely it
# comes, finds little left to do.
QUIET, MAX_DIRTY = 0.5, 5.0
GATES_PER_STEP = 64  # build(): gates handled between two yields (a step costs well under a millisecond)
TEARDOWN_BATCH = 2000  # teardown(): per-gate entries (or gates) freed between two yields
# What Frame holds per gate, dropped by teardown() a batch at a time (_vals: one list per family).
_PER_GATE = ("_vals", "_labels", "_outside", "_status", "_step_of", "_phase_of", "_tracker_of", "_tier_of")


class Frame:
    """The rendered gate series of one set of configs; current once build() has run to its end."""

    def __init__(self, trackers: list[tuple[Config, State]], headers: dict[bool, list[Blob]]):
        self._trackers = list(trackers)
        self._headers = headers  # shared by every frame: (openmetrics) -> each family's HELP and TYPE
        self.gates = sum(len(c.gates) for c, _ in self._trackers)
        self._accepting = False  # update() waits until positions and aggregates exist (build() says)
        self._pos: dict[tuple[str, str], int] = {}
        self._groups: dict[tuple[int, int], Blob] = {}  # (family, group) -> GROUP pieces
        self._sections: dict[tuple[int, bool], Blob] = {}  # (family, openmetrics) -> header + groups
        self._bodies: dict[bool, Blob] = {}  # openmetrics -> every section and the aggregates
        self._aggregates: dict[bool, Blob] = {}
        self.dirty_chunks: dict[int, list[float]] = {}  # chunk -> [first change, last change] (monotonic)

    # --- building -------------------------------------------------------------------------------

    def build(self, prerender: bool = True) -> Iterator[None]:
        """Fill the frame, yielding every few dozen gates (or pieces): labels and the static families,
        the aggregates' index, every gate's values from its state, then (prerender) every piece and both
        bodies compressed, so that the first scrape of the frame finds nothing left to do."""
        n = self.gates
        objectives: dict[tuple[str, str], float] = {}
        for config, _ in self._trackers:
            for gid, ratio in config.objectives().items():
                objectives[(config.tracker, gid)] = ratio
        gates = [g for config, _ in self._trackers for g in config.gates]
        self._labels: list[bytes] = [b""] * n
        self._outside = [False] * n  # gates with the evidence series
        # Per family and gate: the sample's value as written (b"": no sample). Lines are rendered
        # per piece from these (a whole line per gate would take 10x the memory).
        self._vals: list[list[bytes]] = [[] if fam in _STATIC else [b""] * n for fam in range(len(GATE_FAMILIES))]
        self._pieces: list[list[Blob | None]] = [[None] * ((n + CHUNK - 1) // CHUNK) for _ in GATE_FAMILIES]
        static: dict[int, list[str]] = {fam: [] for fam in _STATIC}
        for i, gate in enumerate(gates):
            self._pos[(gate.tracker, gate.id)] = i
            labels = gate_labels(gate)
            self._labels[i] = labels.encode()
            self._outside[i] = takes_evidence(gate)
            th = gate.threshold
            obj = objectives.get((gate.tracker, gate.id))
            static[_THRESHOLD].append("" if th is None else f"gate_threshold{{{labels}}} {fmt(th)}\n")
            static[_INTERVAL].append(f"gate_interval_seconds{{{labels}}} {fmt(gate.interval)}\n")
            static[_OBJECTIVE].append("" if obj is None else f"gate_objective_ratio{{{labels}}} {fmt(obj)}\n")
            static[_INFO].append(f'gate_info{{{labels},title="{escape(gate.title)}",team="{escape(gate.team)}",'
                                 f'kind="{gate.kind}",unit="{units.family(gate)}"}} 1.0\n')
            if i % GATES_PER_STEP == GATES_PER_STEP - 1:
                yield
        for fam, lines in static.items():  # never change until the next config: rendered once, kept as pieces
            pieces: list[Blob | None] = []
            for c in range(0, n, CHUNK):
                pieces.append(Blob("".join(lines[c:c + CHUNK]).encode()))
                if c % (16 * CHUNK) == 15 * CHUNK:
                    yield
            self._pieces[fam] = pieces
            yield
        del static, gates
        yield from self._build_aggregates()
        self._accepting = True  # from here on an evaluation's result is shown (and counted) at once
        now = time.time()
        k = 0
        for config, state in self._trackers:
            for gate in config.gates:
                self.update(gate, state.get(gate.id), config.uptime_window, now)
                k += 1
                if k % GATES_PER_STEP == 0:
                    yield
        self.dirty_chunks.clear()  # nothing was rendered yet: everything is rendered next (or at the first scrape)
        if prerender:
            yield from self._prerender()

    def _prerender(self) -> Iterator[None]:
        # A piece dirtied by an evaluation after it was rendered here is rendered again by the
        # next sweep or scrape, as in steady state.
        for fam in range(len(GATE_FAMILIES)):
            pieces = self._pieces[fam]
            for c in range(len(pieces)):
                piece = pieces[c]
                if piece is None:
                    piece = pieces[c] = Blob(source=functools.partial(self._render_piece, fam, c))
                piece.z  # noqa: B018 - computes and keeps the deflate block (and size and CRC)
                piece.crc  # noqa: B018
                if c % 8 == 7:
                    yield
        for om in (True, False):
            body = self._body(om)
            for section in body.parts or ():  # CRCs combined a section at a time (all at once: a 2-4 ms step)
                for group in section.parts or ():
                    group.crc  # noqa: B018
                yield
                section.crc  # noqa: B018
                section.zleaves()  # the pieces' blocks, listed
            body.zleaves()
            yield
            body.crc  # noqa: B018 - their CRCs combined
            yield

    def release(self) -> None:
        """Drop the pieces (no longer served): their sources refer back to the frame, and without this
        the cycle would wait for a full collection of the cyclic GC to be freed."""
        self._pieces, self._groups, self._sections, self._bodies, self._aggregates = [], {}, {}, {}, {}

    def teardown(self) -> Iterator[None]:
        """release(), then everything else the frame holds let go of a little at a time, its configs' gates
        included: freed at once, the ~150,000 objects of a 10,000-gate frame and config held the event
        loop 10-20 ms (at the swap, and when the reload ended)."""
        pieces = self._pieces
        self.release()
        while pieces:
            pieces.pop()
            yield
        self._accepting = False
        gates = [g for config, _ in self._trackers for g in config.gates]
        self._trackers = []  # the config's shell goes now (or with the reload that replaced it); its gates below
        yield
        for name in _PER_GATE:
            value = getattr(self, name, None)
            if isinstance(value, list):
                while value:
                    del value[-TEARDOWN_BATCH:]
                    yield
            setattr(self, name, [])
            yield
        self._pos = {}
        yield
        while gates:
            del gates[-TEARDOWN_BATCH:]
            yield

    # --- evaluations ---------------------------------------------------------------------------

    def update(self, gate: Gate, st: GateState, uptime_window: float, now: float | None = None) -> bool:
        """Re-render one gate's changing lines from its state; True when a sample changed."""
        if not self._accepting:
            return False  # the build reads every gate's state later
        i = self._pos.get((gate.tracker, gate.id))
        if i is None:
            return False  # not (or no longer) configured: a late result of a removed gate
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
            t = time.monotonic()
            times = self.dirty_chunks.get(chunk)
            if times is None:
                self.dirty_chunks[chunk] = [t, t]
            else:
                times[1] = t
        status = st.status
        old = self._status[i]
        if status != old:
            self._status[i] = status
            self._count(i, old, -1)
            self._count(i, status, +1)
            self._aggregates.clear()
            self._bodies.clear()
        return changed

    def sweep(self, budget: float) -> None:
        """Render and compress the pieces of quiet changed chunks, for about `budget` seconds at most."""
        now, t0 = time.monotonic(), time.perf_counter()
        for chunk, (first, last) in list(self.dirty_chunks.items()):
            if now - last < QUIET and now - first < MAX_DIRTY:
                continue
            for fam in _DYNAMIC:
                pieces = self._pieces[fam]
                if chunk < len(pieces):
                    piece = pieces[chunk]
                    if piece is None:
                        piece = pieces[chunk] = Blob(source=functools.partial(self._render_piece, fam, chunk))
                    piece.z  # noqa: B018 - computes and keeps the deflate block
            del self.dirty_chunks[chunk]
            if time.perf_counter() - t0 > budget:
                break

    def _dirty(self, fam: int, chunk: int) -> None:
        if self._pieces[fam][chunk] is not None:  # else its group, section and bodies are gone already
            self._pieces[fam][chunk] = None
            self._groups.pop((fam, chunk // GROUP), None)
            self._sections.pop((fam, False), None)
            self._sections.pop((fam, True), None)
            self._bodies.clear()

    # --- rendering ---------------------------------------------------------------------------

    def render(self, openmetrics: bool, gzip: bool, tail: bytes) -> bytes:
        """A whole scrape: the gate series and aggregates, then `tail`; gzip-compressed if asked."""
        body = self._body(openmetrics)
        return gzip_member(body, tail) if gzip else b"".join([*body.leaves(), tail])

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
            groups = [self._group(fam, g) for g in range((len(self._pieces[fam]) + GROUP - 1) // GROUP)]
            section = self._sections[(fam, om)] = Blob(parts=[self._headers[om][fam], *groups])
        return section

    def _group(self, fam: int, g: int) -> Blob:
        """GROUP pieces of a family, every one of them made (a group exists only while none is dirty)."""
        group = self._groups.get((fam, g))
        if group is None:
            pieces = self._pieces[fam]
            for c in range(g * GROUP, min(len(pieces), (g + 1) * GROUP)):
                if pieces[c] is None:
                    pieces[c] = Blob(source=functools.partial(self._render_piece, fam, c))
            group = self._groups[(fam, g)] = Blob(parts=pieces[g * GROUP:(g + 1) * GROUP])  # type: ignore[arg-type]
        return group

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

    # --- aggregates ----------------------------------------------------------------------------

    def _build_aggregates(self) -> Iterator[None]:
        """Index every gate's step, phase and tracker, and count statuses from scratch."""
        n = self.gates
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
                    if len(self._steps) % 8 == 0:
                        yield
                if in_phase:
                    self._phases.append((f'tracker="{tl}",phase="{p}"', in_phase))
        self._step_pass = [0] * len(self._steps)
        self._phase_pass = [0] * len(self._phases)
        self._tally = [{(tier, s): 0 for tier in TIERS for s in STATUSES} for _ in self._trackers]
        for i in range(n):
            self._count(i, PENDING, +1)
            if i % (16 * GATES_PER_STEP) == 16 * GATES_PER_STEP - 1:
                yield  # 10,000 gates at once held a build step 5-7 ms

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
