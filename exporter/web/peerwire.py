"""What shards send each other, as JSON: gate states (for gathered reads), attestations and pushes (handover).

Internal documents, not part of the API: numbers go as Python's json writes them (a NaN stays a
NaN between shards; the public documents turn it into null as before).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from exporter.model import ERROR, FAIL, PASS, Evidence, Result
from exporter.state.buckets import Buckets
from exporter.state.evidence import Push
from exporter.state.memory import GateState
from exporter.state.store import Attestation


def result_json(r: Result) -> dict[str, Any]:
    """A result, whole."""
    return {"gate": r.gate, "outcome": r.outcome, "started": r.started, "duration": r.duration,
            "measurements": dict(r.measurements), "message": r.message, "awaiting": r.awaiting,
            "evidence": dataclasses.asdict(r.evidence) if r.evidence is not None else None}


def result_from(doc: dict[str, Any]) -> Result:
    """The result result_json wrote."""
    ev = doc.get("evidence")
    return Result(str(doc["gate"]), str(doc["outcome"]), float(doc["started"]), float(doc["duration"]),
                  {str(k): float(v) for k, v in doc["measurements"].items()}, str(doc["message"]),
                  Evidence(**ev) if ev is not None else None, bool(doc["awaiting"]))


def state_json(st: GateState, buckets: bool) -> dict[str, Any]:
    """What a gathered read needs of a gate's state (uptime buckets only for the page; history never:
    a gate's own page and API are asked of its owner)."""
    doc: dict[str, Any] = {"result": result_json(st.result) if st.result is not None else None,
                           "last_pass": st.last_pass, "since": st.since, "counts": dict(st.counts)}
    if buckets:
        starts, passed, totals = st.buckets.columns()
        doc["buckets"] = [list(b) for b in zip(starts, passed, totals, strict=False)]  # as long as the starts
    return doc


def state_from(doc: dict[str, Any]) -> GateState:
    """A read-only copy of a peer's gate state."""
    counts = {PASS: 0, FAIL: 0, ERROR: 0}
    counts.update({str(k): int(v) for k, v in doc["counts"].items()})
    return GateState(result=result_from(doc["result"]) if doc["result"] is not None else None,
                     last_pass=doc["last_pass"], since=doc["since"], counts=counts,
                     buckets=Buckets.of({int(s): (int(p), int(t)) for s, p, t in doc.get("buckets", [])}))


def attestation_json(att: Attestation) -> dict[str, Any]:
    """An attestation, whole (the API's form rounds the time into RFC 3339)."""
    return {"value": att.value, "at": att.at, "by": att.by, "note": att.note}


def attestation_from(doc: dict[str, Any]) -> Attestation:
    """The attestation attestation_json wrote."""
    return Attestation(float(doc["value"]), float(doc["at"]), str(doc["by"]), str(doc["note"]))


def push_json(push: Push) -> dict[str, Any]:
    """A stored push, its report body (when it was kept) in base64."""
    doc = {f.name: getattr(push, f.name) for f in dataclasses.fields(push) if f.name != "body"}
    doc["measurements"] = dict(push.measurements)
    doc["body"] = base64.b64encode(push.body).decode() if push.body is not None else None
    return doc


def push_from(doc: dict[str, Any]) -> Push:
    """The push push_json wrote."""
    fields = {f.name for f in dataclasses.fields(Push)}
    values = {k: v for k, v in doc.items() if k in fields}
    values["measurements"] = {str(k): float(v) for k, v in doc["measurements"].items()}
    values["body"] = base64.b64decode(doc["body"]) if doc.get("body") is not None else None
    return Push(**values)
