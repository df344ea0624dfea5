"""The whole tracker as the read routes see it: this shard's runtime, or every shard's gates gathered.

With `--shard.peers`, the peers middleware (web/peers.py) puts a `Whole` on the request: the
unsharded configs and a state holding every shard's gates. The read handlers take their trackers
and states from `runtime_of(request)`, so one code path renders one exporter and a sharded set
alike; `whole_doc` then marks the gates of shards that did not answer `unknown`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from exporter.config.model import Config
from exporter.model import ERROR
from exporter.state.memory import GateState, State

UNKNOWN = "unknown"


class Tracked(Protocol):
    """What the read routes need: configs and states by tracker name."""

    @property
    def trackers(self) -> dict[str, Config]: ...

    @property
    def states(self) -> dict[str, State]: ...


@dataclass(frozen=True)
class Missing:
    """A shard that did not answer the gathering."""

    shard: int
    url: str
    error: str

    def to_json(self) -> dict[str, Any]:
        """The status document's `unknown_shards` entry."""
        return {"shard": self.shard, "url": self.url, "error": self.error}


class UnknownGate(GateState):
    """A gate of a shard that did not answer: an error to every count (never a pass), `Unknown` on the page."""


@dataclass
class Whole:
    """Every shard's gates: whole configs, a merged state, and which gates are unknown (by tracker)."""

    trackers: dict[str, Config]
    states: dict[str, State]
    unknown: dict[str, dict[str, Missing]] = field(default_factory=dict)  # tracker -> gate id -> its shard
    missing: tuple[Missing, ...] = ()

    def __post_init__(self) -> None:
        # The page's views see a gate state, not the request: the type carries "unknown" to them.
        for name, gates in self.unknown.items():
            state = self.states.get(name)
            if state is None:
                continue
            for gate_id in gates:
                st = state.gates.get(gate_id)
                if st is not None and not isinstance(st, UnknownGate):
                    state.gates[gate_id] = UnknownGate(st.result, st.last_pass, st.since, st.counts, st.history,
                                                       st.buckets)


# A typed request key (a plain string key draws aiohttp's NotAppKeyWarning on every request).
WHOLE_KEY = web.RequestKey("qualitygate.whole", Whole)


def runtime_of(request: web.Request, key: web.AppKey[Any]) -> Tracked:
    """The trackers a read answers for: the gathered whole when there is one, else this process's runtime."""
    whole = request.get(WHOLE_KEY)
    if isinstance(whole, Whole):
        return whole
    runtime: Tracked = request.app[key]
    return runtime


def whole_doc(request: web.Request, doc: dict[str, Any]) -> dict[str, Any]:
    """A status or gates document with the gates of shards that did not answer marked `unknown`.

    Those gates sit in the gathered state as errors (so the page shows them failing, never
    passing); here they become `unknown`, counted apart in quality_gates, phases and steps, left
    out of blockers, and the document says how many there were and which shards were missing."""
    whole = request.get(WHOLE_KEY)
    if not isinstance(whole, Whole):
        return doc
    unknown = whole.unknown.get(str(doc.get("tracker")), {})
    if not unknown:
        return doc
    per_phase: dict[str, int] = {}
    per_step: dict[tuple[str, str], int] = {}
    for entry in doc.get("gates", []):
        miss = unknown.get(entry["id"])
        if miss is None:
            continue
        if "quality_gates" in doc and entry["status"] == ERROR:
            tier = doc["quality_gates"][entry["tier"]]
            tier["error"] -= 1
            tier[UNKNOWN] = tier.get(UNKNOWN, 0) + 1
        entry.update(status=UNKNOWN, shard=miss.shard, message=f"unknown: shard {miss.shard} ({miss.url}) "
                                                               f"did not answer: {miss.error}")
        per_phase[entry["phase"]] = per_phase.get(entry["phase"], 0) + 1
        per_step[(entry["phase"], entry["step"])] = per_step.get((entry["phase"], entry["step"]), 0) + 1
    if "quality_gates" in doc:
        for tier in doc["quality_gates"].values():
            tier.setdefault(UNKNOWN, 0)
        doc["blockers"] = [b for b in doc.get("blockers", []) if b["gate"] not in unknown]
        for phase in doc.get("phase_status", []):
            phase[UNKNOWN] = per_phase.get(phase["id"], 0)
        for step in doc.get("step_completion", []):
            step[UNKNOWN] = per_step.get((step["phase"], step["id"]), 0)
    doc["unknown_gates"] = len(unknown)
    shards = sorted({m.shard for m in unknown.values()})
    doc["unknown_shards"] = [m.to_json() for m in whole.missing if m.shard in shards]
    return doc
