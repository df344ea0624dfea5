"""PLACEHOLDER being written now."""
from dataclasses import dataclass
from exporter.probes.base import Measurement, ProbeKind
from exporter.schema import opt

@dataclass(frozen=True)
class Spec:
    x: str = opt(None)

async def probe(spec, ctx):
    raise NotImplementedError

KIND = ProbeKind("coverage", Spec, probe, ("value",))
