"""The `/api/progress/status` document: the JSON shape the user's own tracker asked for."""

from __future__ import annotations

import time
from typing import Any

from exporter.config.model import TIERS, Config, Gate
from exporter.engine.evaluate import takes_evidence
from exporter.model import ERROR, FAIL, PASS, PENDING, Evidence, finite, finite_values, rfc3339
from exporter.report.target import probe_target
from exporter.state.memory import GateState, State

BLOCKING_TIERS = ("critical", "important")


def progress_word(passed: int, total: int) -> str:
    """complete | in_progress | not_started for a group of gates."""
    if total and passed == total:
        return "complete"
    return "in_progress" if passed else "not_started"


def evidence_json(ev: Evidence | None) -> dict[str, Any] | None:
    """The API's `evidence` object: the fields that apply, times in RFC 3339 as everywhere in the document."""
    if ev is None:
        return None
    out: dict[str, Any] = {"kind": ev.kind, "at": rfc3339(ev.at)}
    for key in ("commit", "branch", "run_url", "run_id", "by", "note"):
        value = getattr(ev, key)
        if value is not None:
            out[key] = value
    if ev.expires_at is not None:
        out["expires_at"] = rfc3339(ev.expires_at)
    if ev.digest is not None:
        out["digest"] = ev.digest
    return out


def awaiting(gate: Gate, st: GateState | None) -> bool:
    """A gate evidenced from outside that has never had accepted evidence (it fails, but nothing was measured)."""
    r = st.result if st else None
    return r is not None and r.awaiting and takes_evidence(gate)


def gate_json(gate: Gate, st: GateState | None) -> dict[str, Any]:
    """One gate's entry in the status document and in /api/gates."""
    r = st.result if st else None
    entry = {
        "id": gate.id,
        "phase": gate.phase,
        "step": gate.step,
        "title": gate.title,
        "tier": gate.tier,
        "kind": gate.kind,
        "target": probe_target(gate.kind, gate.spec),  # what the probe looks at, never a secret
        "status": st.status if st else PENDING,
        # Strict JSON: a non-finite number (from a state file written before they became errors) is null.
        "value": finite(r.value) if r else None,
        "measurements": finite_values(r.measurements) if r else {},
        "expect": gate.expect_text,
        "last_evaluation": rfc3339(r.started) if r else None,
        "last_pass": rfc3339(st.last_pass) if st else None,
        "duration_seconds": finite(r.duration) if r else None,
        "message": r.message if r else "",
        "evidence": evidence_json(r.evidence) if r else None,
    }
    if takes_evidence(gate):
        entry["awaiting_evidence"] = awaiting(gate, st)
    return entry


def _tier_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Critical first, then important, then enhancement; config order within a tier (a stable sort)."""
    return sorted(entries, key=lambda e: TIERS.index(e["tier"]))


def progress_status(config: Config, state: State, now: float | None = None) -> dict[str, Any]:
    """Build the whole status document for one tracker."""
    now = time.time() if now is None else now
    tiers = {t: {"passed": 0, "failed": 0, "error": 0, "pending": 0, "total": 0} for t in TIERS}
    word = {PASS: "passed", FAIL: "failed", ERROR: "error", PENDING: "pending"}
    gates, phases, steps, blockers, waiting = [], [], [], [], []
    all_pass = all_total = 0
    for phase in config.phases:
        p_pass = p_total = 0
        for step in phase.steps:
            s_pass = 0
            for g in step.gates:
                st = state.gates.get(g.id)
                entry = gate_json(g, st)
                gates.append(entry)
                status = entry["status"]
                tiers[g.tier][word[status]] += 1
                tiers[g.tier]["total"] += 1
                s_pass += status == PASS
                # Blockers are measured failures and errors; a claim nobody has evidenced yet is listed
                # apart (awaiting_evidence), whatever its tier.
                if entry.get("awaiting_evidence"):
                    waiting.append({"gate": g.id, "phase": g.phase, "step": g.step, "title": g.title, "tier": g.tier,
                                    "kind": g.kind, "message": entry["message"]})
                elif g.tier in BLOCKING_TIERS and status in (FAIL, ERROR):
                    blockers.append({"gate": g.id, "phase": g.phase, "step": g.step, "title": g.title, "tier": g.tier,
                                     "status": status, "message": entry["message"],
                                     "since": rfc3339(st.since if st else None)})
            n = len(step.gates)
            steps.append({"id": step.id, "phase": phase.id, "title": step.title, "team": step.team,
                          "completion": s_pass / n if n else 0.0, "status": progress_word(s_pass, n),
                          "gates": n})
            p_pass += s_pass
            p_total += n
        phases.append({"id": phase.id, "title": phase.title, "completion": p_pass / p_total if p_total else 0.0,
                       "status": progress_word(p_pass, p_total), "gates": p_total})
        all_pass += p_pass
        all_total += p_total
    return {
        "tracker": config.tracker,
        "title": config.title,
        "generated_at": rfc3339(now),
        "overall_completion": all_pass / all_total if all_total else 0.0,
        "phase_status": phases,
        "step_completion": steps,
        "quality_gates": tiers,
        "gates": gates,
        "blockers": _tier_first(blockers),
        "awaiting_evidence": _tier_first(waiting),
    }
