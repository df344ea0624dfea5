"""The gate page's "Probe" and "Evidence" lines: what the probe looks at, and what the current status rests on."""

from __future__ import annotations

from typing import Any

from exporter.config.model import Gate
from exporter.model import ATTESTATION, PUSH, Result
from exporter.report.target import probe_target, target_text
from exporter.web.humanize import ago


def gate_probe(gate: Gate, result: Result | None, base_dir: str | None, now: float) -> dict[str, Any]:
    """The target line (never a secret: see exporter.report.target) and the evidence of the last result."""
    out: dict[str, Any] = {"target": target_text(gate.kind, probe_target(gate.kind, gate.spec, base_dir)),
                           "evidence": None}
    ev = result.evidence if result is not None else None
    if ev is None:
        return out
    item: dict[str, Any] = {"kind": ev.kind, "at": ev.at, "ago": ago(ev.at, now), "expires_at": ev.expires_at,
                            "expires_in": _until(ev.expires_at, now) if ev.expires_at is not None else ""}
    if ev.kind == PUSH:
        item.update(commit=ev.commit or "", branch=ev.branch or "", run_id=ev.run_id or "", digest=ev.digest or "",
                    run_url=ev.run_url if ev.run_url and ev.run_url.startswith(("https://", "http://")) else "")
    elif ev.kind == ATTESTATION:
        item.update(by=ev.by or "anonymous", note=ev.note or "")
    out["evidence"] = item
    return out


def _until(ts: float, now: float) -> str:
    return f"lapsed {ago(ts, now)}" if ts <= now else f"in {ago(now - (ts - now), now).removesuffix(' ago')}"
