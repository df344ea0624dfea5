"""Pushed evidence as the running exporter holds it: each push-sourced gate's latest run that counts,
the runs of other branches seen lately, and the trackers' push tokens.

A push is judged here before it is stored (`judge`), and kept here once it is (`accept`); the
gate's own evaluation then reads `record()` through ProbeContext.evidence, so a push and the
gate's next evaluation judge the same measurements. `delta` is the change of `value` against the
run that counted before: computed when a push arrives and stored with it, so a restart gives it
back (the baseline of a restored run is its value minus its newest push's delta).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exporter.config.fields import ConfigError, Issue
from exporter.config.model import Config, Gate
from exporter.engine.evaluate import judge
from exporter.probes import KINDS, Measurement, PushRecord
from exporter.state.evidence import Push

OK_KEY = "_ok"  # the kind's default pass condition, stored among a push's measurements (1 or 0)
SIDE_RUNS = 256  # runs of branches that do not decide their gate, kept to sum their parts (junit)
MAX_TOKEN_FILE = 1 << 20
_DUMMY = hashlib.sha256(b"no push token configured").digest()


def takes_pushes(gate: Gate) -> bool:
    """Whether a gate's source is `push`."""
    return getattr(gate.spec, "push", None) is not None


def measurement_of(push: Push) -> Measurement:
    """A stored push as the Measurement its report gave (delta and private keys left out)."""
    values = {k: v for k, v in push.measurements.items() if not k.startswith("_") and k != "delta"}
    ok = push.measurements.get(OK_KEY, 1.0) != 0.0
    return Measurement(values, ok=ok, message="" if ok else "the pushed report did not pass")


def stored_measurements(m: Measurement, delta: float | None) -> dict[str, float]:
    """What a push stores: the report's measurements, its default pass, and the run's delta."""
    out = dict(m.values)
    out[OK_KEY] = 1.0 if m.ok else 0.0
    if delta is not None:
        out["delta"] = delta
    return out


@dataclass(frozen=True)
class Run:
    """The pushes of one run (one run_id, or one push without it), newest first, and what it measured."""

    pushes: tuple[Push, ...]
    measurement: Measurement
    baseline: float | None  # `value` of the run that counted before this one
    kind: str = ""  # the probe kind that measured it

    @property
    def value(self) -> float | None:
        """The run's primary measurement."""
        return self.measurement.value

    def values(self) -> dict[str, float]:
        """The run's measurements with its delta."""
        out = dict(self.measurement.values)
        if self.baseline is not None and self.value is not None:
            out["delta"] = change(self.value, self.baseline)
        return out


def change(value: float, baseline: float) -> float:
    """value - baseline, rounded to 12 digits: a drop of exactly 0.5% must meet `delta >= -0.5%`."""
    return round(value - baseline, 12)


def distinct(pushes: Iterable[Push]) -> tuple[Push, ...]:
    """A run's pushes without repeats of one report (a CI retry), newest first."""
    seen: set[str] = set()
    out = []
    for p in pushes:
        if p.sha256 not in seen:
            seen.add(p.sha256)
            out.append(p)
    return tuple(out)


def run_of(kind_name: str, parts: list[Measurement]) -> Measurement:
    """One run's measurement: its parts summed where the kind sums them (junit), else the newest part."""
    combine = KINDS[kind_name].combine
    if combine is not None and len(parts) > 1:
        return combine(parts)
    return parts[0]


@dataclass(frozen=True)
class Judged:
    """The judgement of one push, before it is stored."""

    counts: bool
    outcome: str
    message: str
    values: dict[str, float]  # the run's measurements, with delta when there is a baseline
    delta: float | None
    parsed: Measurement  # this report alone


class Evidence:
    """Latest counting run per push-sourced gate; other branches' recent runs; the push tokens."""

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], Run] = {}
        self._side: collections.OrderedDict[tuple[str, str, str], tuple[Push, ...]] = collections.OrderedDict()
        self._tokens: dict[str, tuple[bytes, ...]] = {}

    # --- config -------------------------------------------------------------------------------

    def configure(self, configs: Iterable[Config], stored: Callable[[str, str], tuple[Push, ...]] | None) -> None:
        """Keep the runs of push-sourced gates that remain; fill new ones from the store (memory, cheap)."""
        keep: dict[tuple[str, str], Run] = {}
        for config in configs:
            for gate in config.gates:
                if not takes_pushes(gate):
                    continue
                key = (config.tracker, gate.id)
                run = self._runs.get(key)
                if run is not None and run.kind != gate.kind:
                    run = restored_run(gate, run.pushes)  # a reload changed the kind: measure the run its way
                elif stored is not None:
                    run = restored_run(gate, stored(config.tracker, gate.id))
                if run is not None:
                    keep[key] = run
        self._runs = keep

    def set_tokens(self, tokens: dict[str, tuple[bytes, ...]]) -> None:
        """The sha256 digests of each tracker's push tokens (from read_tokens)."""
        self._tokens = dict(tokens)

    def token_ok(self, tracker: str, token: str) -> bool:
        """Whether a presented token is one of the tracker's: every digest compared, in constant time."""
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        ok = False
        for known in self._tokens.get(tracker, ()) or (_DUMMY,):
            ok |= hmac.compare_digest(presented, known)  # no early exit: the time does not tell which
        return ok and bool(self._tokens.get(tracker))

    def has_tokens(self, tracker: str) -> bool:
        """Whether the tracker has a push_tokens_file with at least one token."""
        return bool(self._tokens.get(tracker))

    # --- reading --------------------------------------------------------------------------

    def run(self, tracker: str, gate: Gate) -> Run | None:
        """The run that decides the gate now (from its `branch`, when it names one), or None."""
        run = self._runs.get((tracker, gate.id))
        branch = gate.spec.push.branch
        if run is None or (branch is not None and run.pushes[0].branch != branch):
            return None
        return run

    def record(self, tracker: str, gate_id: str) -> PushRecord | None:
        """ProbeContext.evidence: the evidence a push-sourced gate is judged on, or None."""
        run = self._runs.get((tracker, gate_id))
        if run is None:
            return None
        newest = run.pushes[0]
        m = run.measurement
        return PushRecord(at=newest.received_at, values=run.values(), ok=m.ok, message=m.message,
                          branch=newest.branch, commit=newest.commit or None, run_url=newest.run_url or None,
                          run_id=newest.run_id or None, digest=newest.sha256)

    def lookup(self, tracker: str) -> Callable[[str], PushRecord | None]:
        """ProbeContext.evidence for one tracker."""
        return lambda gate_id: self.record(tracker, gate_id)

    # --- a push ---------------------------------------------------------------------------

    def judge(self, tracker: str, gate: Gate, parsed: Measurement, branch: str, run_id: str,
              digest: str = "") -> Judged:
        """Judge a parsed push as it would stand once stored; changes nothing.

        A report pushed again into its run (same digest: a retried CI step) replaces itself, not adds."""
        wanted = gate.spec.push.branch
        counts = wanted is None or branch == wanted
        current = self.run(tracker, gate)
        parts, baseline = [parsed], current.value if current is not None else None
        if counts and current is not None and run_id and current.pushes[0].run_id == run_id:
            parts += [measurement_of(p) for p in current.pushes if p.sha256 != digest]
            baseline = current.baseline
        elif not counts and run_id:
            parts += [measurement_of(p) for p in self._side.get((tracker, gate.id, run_id), ()) if p.sha256 != digest]
        m = run_of(gate.kind, parts)
        values = dict(m.values)
        delta = None
        if baseline is not None and m.value is not None:
            delta = values["delta"] = change(m.value, baseline)
        outcome, message = judge(gate, Measurement(values, ok=m.ok, message=m.message))
        return Judged(counts, outcome, message, values, delta, parsed)

    def accept(self, tracker: str, gate: Gate, push: Push, parsed: Measurement | None = None) -> None:
        """Keep a push once stored: a counting one becomes (part of) the gate's run.

        `parsed` is the report's own Measurement (its message; a stored push keeps only numbers)."""
        key = (tracker, gate.id)
        if not push.counts:
            if push.run_id:
                side = (tracker, gate.id, push.run_id)
                self._side[side] = distinct((push, *self._side.pop(side, ())))
                while len(self._side) > SIDE_RUNS:
                    self._side.popitem(last=False)
            return
        current = self.run(tracker, gate)
        if current is not None and push.run_id and current.pushes[0].run_id == push.run_id:
            pushes, baseline = distinct((push, *current.pushes)), current.baseline
        else:
            pushes, baseline = (push,), current.value if current is not None else None
        m = run_of(gate.kind, [parsed or measurement_of(push), *(measurement_of(p) for p in pushes[1:])])
        self._runs[key] = Run(pushes, m, baseline, gate.kind)


def restored_run(gate: Gate, pushes: tuple[Push, ...]) -> Run | None:
    """The run the store gave back (newest first), with its baseline from the newest push's delta."""
    if not pushes:
        return None
    pushes = distinct(pushes)
    m = run_of(gate.kind, [measurement_of(p) for p in pushes])
    delta = pushes[0].measurements.get("delta")
    baseline = m.value - delta if delta is not None and m.value is not None else None
    return Run(pushes, m, baseline, gate.kind)


# --- push tokens ----------------------------------------------------------------------------------


def read_tokens(configs: Iterable[Config]) -> dict[str, tuple[bytes, ...]]:
    """Each tracker's push token digests; a file that cannot be used is a ConfigError (FILE:LINE).

    Blocking: serve calls it before it listens and, on a reload, in a thread."""
    out: dict[str, tuple[bytes, ...]] = {}
    issues: list[Issue] = []
    for config in configs:
        if not config.push_tokens_file:
            continue
        try:
            out[config.tracker] = _read_token_file(config.push_tokens_file)
        except ValueError as exc:
            issues.append(Issue(config.source, config.push_tokens_line, "push_tokens_file", str(exc)))
    if issues:
        raise ConfigError(issues)
    return out


def _read_token_file(path: str) -> tuple[bytes, ...]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not hold up a reload
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ValueError(f"{path}: not a regular file")
            data = fh.read(MAX_TOKEN_FILE + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TOKEN_FILE:
        raise ValueError(f"{path}: larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8") from None
    digests = []
    for n, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(c.isspace() for c in token) or not token.isprintable():
            # The token itself is never shown: a line number says enough.
            raise ValueError(f"{path}:{n}: a token holds whitespace or control characters (one token a line)")
        digests.append(hashlib.sha256(token.encode("utf-8")).digest())
    if not digests:
        raise ValueError(f"{path}: no token in it (one bearer token a line)")
    return tuple(digests)
