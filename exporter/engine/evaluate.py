"""One evaluation of one gate: run its probe under the timeout, judge the measurement."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time

from exporter.config.durations import format_duration
from exporter.config.model import Gate
from exporter.config.units import gate_sentence
from exporter.log import kv
from exporter.model import ERROR, FAIL, PASS, PROBE, Evidence, Result
from exporter.probes import KINDS, Measurement, ProbeContext, ProbeError

log = logging.getLogger("qualitygate.engine")

STAGES = ("probe", "judge", "record")  # where an unexpected exception can happen in one evaluation


class Faults:
    """Unexpected exceptions per stage of evaluation: each became an error outcome, and is counted."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter({stage: 0 for stage in STAGES})

    def note(self, stage: str, gate: Gate) -> None:
        """Count and log (with its traceback) the exception being handled."""
        self.counts[stage] += 1
        log.exception("unexpected exception in an evaluation; the gate is in error",
                      extra=kv(stage=stage, tracker=gate.tracker, gate=gate.id))


def no_measurement(value: float) -> str:
    """The message for a non-finite measurement: NaN or an infinity measured nothing."""
    return f"measured {'NaN' if math.isnan(value) else '+Inf' if value > 0 else '-Inf'}: no measurement"


def takes_evidence(gate: Gate) -> bool:
    """Whether a gate is evidenced from outside (manual attestations, pushed reports), not by its own probe."""
    return gate.kind == "manual" or getattr(gate.spec, "push", None) is not None


async def evaluate(gate: Gate, ctx: ProbeContext, faults: Faults | None = None) -> Result:
    """Evaluate a gate once; every failure becomes an outcome, never an exception."""
    kind = KINDS[gate.kind]
    started = time.time()
    t0 = time.monotonic()
    try:
        measurement = await asyncio.wait_for(kind.probe(gate.spec, ctx), gate.timeout)
    except TimeoutError as exc:
        forget(exc)
        return Result(gate.id, kind.timeout_outcome, started, time.monotonic() - t0,
                      message=f"timed out after {format_duration(gate.timeout)}")
    except ProbeError as exc:
        forget(exc)
        return Result(gate.id, ERROR, started, time.monotonic() - t0, message=str(exc) or "probe error")
    except Exception as exc:  # noqa: BLE001 - a broken probe is an error outcome, never a dead scheduler
        if faults is not None:
            faults.note("probe", gate)
        forget(exc)
        return Result(gate.id, ERROR, started, time.monotonic() - t0, message=f"{type(exc).__name__}: {exc}")
    duration = time.monotonic() - t0
    try:
        return judged(gate, measurement, started, duration)
    except Exception as exc:  # noqa: BLE001 - a bug in judging is this gate's error, not a kept old status
        if faults is not None:
            faults.note("judge", gate)
        forget(exc)
        return Result(gate.id, ERROR, started, duration, message=f"internal error judging: {type(exc).__name__}: {exc}")


def forget(exc: BaseException) -> None:
    """Drop the tracebacks of an exception made into an outcome, and of the exceptions it chains.

    A traceback holds its frames, and their locals hold the task or future that holds the exception
    (wait_for's frame and its inner task, for one): a cycle per failed evaluation. The collector frees
    it, unless part of it was frozen while the evaluation was in flight (serve freezes at every
    reload, engine/pauses.py): then none of it ever is. tests/test_engine_frozen_leaks.py counts them.
    """
    todo: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:  # chains can loop
            continue
        seen.add(id(e))
        e.__traceback__ = None
        todo += (e.__cause__, e.__context__)


def judged(gate: Gate, m: Measurement, started: float, duration: float) -> Result:
    """The Result of a measurement: non-finite values are no measurement (error), whatever `expect` says.

    The result carries the evidence it was judged on; a gate evidenced from outside whose
    measurement has none is `awaiting` (never had accepted evidence).
    """
    evidence, awaiting = m.evidence, False
    if evidence is None:
        if takes_evidence(gate):
            awaiting = True
        else:
            evidence = Evidence(PROBE, started)
    values: dict[str, float] = {}
    bad: float | None = None
    for name, raw in m.values.items():
        try:
            value = float(raw)
        except OverflowError:  # an int too large for a float (a 400-digit capture parsed as int)
            value = math.inf if raw > 0 else -math.inf
        if math.isfinite(value):
            values[name] = value
        elif bad is None or name == "value":
            bad = value  # the primary measurement's, when it is among them
    if bad is not None:
        # Non-finite values are left out of the result: nothing downstream (metrics, JSON, storage) meets them.
        return Result(gate.id, ERROR, started, duration, values, no_measurement(bad), evidence, awaiting)
    outcome, message = judge(gate, Measurement(values, ok=m.ok, message=m.message))
    return Result(gate.id, outcome, started, duration, values, message, evidence, awaiting)


def judge(gate: Gate, m: Measurement) -> tuple[str, str]:
    """Apply the kind's default pass condition and every `expect` condition (to finite values)."""
    for number in m.values.values():
        if not math.isfinite(number):
            return ERROR, no_measurement(number)
    if not m.ok:
        return FAIL, m.message or "failed"
    for cond in gate.expect:
        value = m.values.get(cond.measurement)
        if value is None and cond.measurement == "delta":
            continue  # a pushed report with no earlier push that counts: nothing to compare with
        if value is None:
            return ERROR, f"no {cond.measurement} was measured for {cond.text!r}"
        if not cond.holds(value):
            return FAIL, gate_sentence(gate, cond, value)  # `coverage 71.4 % is below 85 %`: one formatter
    return PASS, m.message
