"""`uptime` gates: the fraction of another gate's evaluations in a window that passed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from exporter.config.fields import Duration, opt
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind


@dataclass(frozen=True, slots=True)
class UptimeSpec:
    """Options of an `uptime` gate."""

    gate: str = opt(required=True, doc="Id of the gate whose evaluations are counted.")
    window: Duration | None = opt(None, doc="Window to count over (default: the tracker's uptime_window).")


async def probe(spec: UptimeSpec, ctx: ProbeContext) -> Measurement:
    """Count-weighted, as Gatus does: passed evaluations / all evaluations in the window."""
    if ctx.history is None:
        raise ProbeError("no evaluation history available (uptime gates need `serve` or --storage.path)")
    now = ctx.now() if ctx.now else time.time()
    window = spec.window if spec.window is not None else ctx.uptime_window
    passed, total = ctx.history.pass_ratio(spec.gate, window, now)
    if total == 0:
        raise ProbeError(f"no evaluations of {spec.gate} in the window yet")
    return Measurement({"value": passed / total})


KIND = ProbeKind("uptime", UptimeSpec, probe, ("value",), needs_expect=True,
                 doc="Share of another gate's evaluations that passed over a window.")
