"""One evaluation of one gate: run its probe under the timeout, judge the measurement."""

from __future__ import annotations

import asyncio
import time

from exporter.config.durations import format_duration
from exporter.config.expect import format_number
from exporter.config.model import Gate
from exporter.model import ERROR, FAIL, PASS, Result
from exporter.probes import KINDS, Measurement, ProbeContext, ProbeError


async def evaluate(gate: Gate, ctx: ProbeContext) -> Result:
    """Evaluate a gate once; every failure becomes an outcome, never an exception."""
    kind = KINDS[gate.kind]
    started = time.time()
    t0 = time.monotonic()
    try:
        measurement = await asyncio.wait_for(kind.probe(gate.spec, ctx), gate.timeout)
    except TimeoutError:
        return Result(gate.id, kind.timeout_outcome, started, time.monotonic() - t0,
                      message=f"timed out after {format_duration(gate.timeout)}")
    except ProbeError as exc:
        return Result(gate.id, ERROR, started, time.monotonic() - t0, message=str(exc) or "probe error")
    except Exception as exc:  # noqa: BLE001 - a broken probe is an error outcome, never a dead scheduler
        return Result(gate.id, ERROR, started, time.monotonic() - t0, message=f"{type(exc).__name__}: {exc}")
    duration = time.monotonic() - t0
    outcome, message = judge(gate, measurement)
    return Result(gate.id, outcome, started, duration, dict(measurement.values), message)


def judge(gate: Gate, m: Measurement) -> tuple[str, str]:
    """Apply the kind's default pass condition and every `expect` condition."""
    if not m.ok:
        return FAIL, m.message or "failed"
    for cond in gate.expect:
        value = m.values.get(cond.measurement)
        if value is None:
            return ERROR, f"no {cond.measurement} was measured for {cond.text!r}"
        if not cond.holds(value):
            return FAIL, f"{cond.measurement} {format_number(value)} does not satisfy {cond.text!r}"
    return PASS, m.message
