"""`manual` gates: a person attests a value; the gate passes while the attestation is fresh."""

from __future__ import annotations

import time
from dataclasses import dataclass

from exporter.config.durations import format_duration
from exporter.config.fields import Duration, opt
from exporter.model import ATTESTATION, Evidence
from exporter.probes.base import Measurement, ProbeContext, ProbeKind


@dataclass(frozen=True, slots=True)
class ManualSpec:
    """Options of a `manual` gate."""

    max_age: Duration = opt(required=True, doc="How long an attestation stays valid.")


async def probe(spec: ManualSpec, ctx: ProbeContext) -> Measurement:
    """Read the newest attestation; none, or one older than max_age, is a fail."""
    if ctx.history is None:
        # One-shot runs without a state file: nobody has attested here, which is a fail, not a probe fault.
        return Measurement({}, ok=False, message="no attestation (no state file given: --storage.path)")
    att = ctx.history.latest_attestation(ctx.gate_id)
    if att is None:
        return Measurement({}, ok=False, message="no attestation yet (qualitygate attest)")
    now = ctx.now() if ctx.now else time.time()
    age = max(0.0, now - att.at)
    values = {"value": float(att.value), "age": age}
    by, note = getattr(att, "by", "") or None, getattr(att, "note", "") or None
    evidence = Evidence(ATTESTATION, att.at, by=by, note=note, expires_at=att.at + spec.max_age)
    if age > spec.max_age:
        message = f"attestation is {format_duration(int(age))} old, max_age {format_duration(spec.max_age)}"
        return Measurement(values, ok=False, message=message, evidence=evidence)
    return Measurement(values, message=f"attested by {by}" if by else "", evidence=evidence)


KIND = ProbeKind("manual", ManualSpec, probe, ("value", "age"), doc="A person's attestation, valid for max_age.")
