"""Helpers for the tracker, report and badge tests: status documents built by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRACKERS = Path(__file__).resolve().parent / "testdata" / "trackers"
JUNIT_XSD = Path(__file__).resolve().parent / "testdata" / "junit.xsd"
TIERS = ("critical", "important", "enhancement")


def word(passed: int, total: int) -> str:
    """complete | in_progress | not_started, as the contract defines them."""
    if total and passed == total:
        return "complete"
    return "in_progress" if passed else "not_started"


def status_from_config(config: Any, outcomes: dict[str, dict[str, Any]] | None = None,
                       generated_at: str = "2025-11-12T20:20:00Z") -> dict[str, Any]:
    """An /api/progress/status document for a loaded config; gates not in `outcomes` are pending."""
    outcomes = outcomes or {}
    tiers = {t: {"passed": 0, "failed": 0, "error": 0, "pending": 0, "total": 0} for t in TIERS}
    key = {"pass": "passed", "fail": "failed", "error": "error", "pending": "pending"}
    gates, phases, steps, blockers = [], [], [], []
    all_pass = all_total = 0
    for p in config.phases:
        p_pass = p_total = 0
        for s in p.steps:
            s_pass = 0
            for g in s.gates:
                o = outcomes.get(g.id, {})
                status = o.get("status", "pending")
                gates.append({"id": g.id, "phase": p.id, "step": s.id, "title": g.title, "tier": g.tier,
                              "kind": g.kind, "status": status, "value": o.get("value"),
                              "expect": list(g.expect_text),
                              "last_evaluation": None if status == "pending" else generated_at,
                              "last_pass": generated_at if status == "pass" else None,
                              "duration_seconds": o.get("duration", 0.01 if status != "pending" else None),
                              "message": o.get("message", "")})
                tiers[g.tier][key[status]] += 1
                tiers[g.tier]["total"] += 1
                s_pass += status == "pass"
                if g.tier in ("critical", "important") and status in ("fail", "error"):
                    blockers.append({"gate": g.id, "phase": p.id, "step": s.id, "tier": g.tier, "status": status,
                                     "message": o.get("message", ""), "since": generated_at})
            n = len(s.gates)
            steps.append({"id": s.id, "phase": p.id, "title": s.title, "team": s.team,
                          "completion": s_pass / n if n else 0.0, "status": word(s_pass, n)})
            p_pass += s_pass
            p_total += n
        phases.append({"id": p.id, "title": p.title, "completion": p_pass / p_total if p_total else 0.0,
                       "status": word(p_pass, p_total)})
        all_pass += p_pass
        all_total += p_total
    return {"tracker": config.tracker, "title": config.title, "generated_at": generated_at,
            "overall_completion": all_pass / all_total if all_total else 0.0, "phase_status": phases,
            "step_completion": steps, "quality_gates": tiers, "gates": gates, "blockers": blockers}


def shape(config: Any) -> list[Any]:
    """Everything about a config's structure that an import -> render -> import round trip must keep."""
    return [(p.id, p.title, [(s.id, s.title, s.team, [(g.id, g.title, g.tier, g.kind, repr(g.spec), g.expect_text)
                                                       for g in s.gates]) for s in p.steps])
            for p in config.phases]


def small_status() -> dict[str, Any]:
    """A hand-made status document: two phases, three steps, one gate of every status."""
    gates = [
        {"id": "health", "phase": "core", "step": "api", "title": "Health endpoint", "tier": "critical",
         "status": "pass", "value": 0.012, "expect": ["response_time < 500ms"], "last_evaluation":
         "2025-11-12T20:19:58Z", "last_pass": "2025-11-12T20:19:58Z", "message": "", "duration_seconds": 0.012},
        {"id": "coverage", "phase": "core", "step": "api", "title": "Line coverage", "tier": "important",
         "status": "fail", "value": 0.71, "expect": [">= 85%"], "last_evaluation": "2025-11-12T20:19:58Z",
         "last_pass": None, "message": "value 0.71 does not meet >= 85%", "duration_seconds": 0.004},
        {"id": "smoke", "phase": "core", "step": "ops", "title": "Smoke tests <script>", "tier": "critical",
         "status": "error", "value": None, "expect": [], "last_evaluation": "2025-11-12T20:19:59Z",
         "last_pass": None, "message": "command not found: ./smoke.sh | tail\x07", "duration_seconds": 0.001},
        {"id": "docs-reviewed", "phase": "docs", "step": "review", "title": "Docs reviewed", "tier": "enhancement",
         "kind": "manual", "status": "fail", "value": None, "expect": [], "last_evaluation": "2025-11-12T20:19:59Z",
         "last_pass": None, "message": "no attestation yet (qualitygate attest)", "duration_seconds": 0.0},
        {"id": "sla", "phase": "docs", "step": "review", "title": "SLA", "tier": "enhancement",
         "status": "pending", "value": None, "expect": ["> 99.9%"], "last_evaluation": None,
         "last_pass": None, "message": ""},
    ]
    return {
        "tracker": "demo", "title": "Demo & Co", "generated_at": "2025-11-12T20:20:00Z",
        "overall_completion": 0.2,
        "phase_status": [{"id": "core", "title": "Core", "completion": 1 / 3, "status": "in_progress"},
                         {"id": "docs", "title": "Docs", "completion": 0.0, "status": "not_started"}],
        "step_completion": [
            {"id": "api", "phase": "core", "title": "API", "team": "Team A", "completion": 0.5,
             "status": "in_progress"},
            {"id": "ops", "phase": "core", "title": "Ops", "team": "", "completion": 0.0, "status": "not_started"},
            {"id": "review", "phase": "docs", "title": "Review", "team": "Team D", "completion": 0.0,
             "status": "not_started"},
        ],
        "quality_gates": {
            "critical": {"passed": 1, "failed": 0, "error": 1, "pending": 0, "total": 2},
            "important": {"passed": 0, "failed": 1, "error": 0, "pending": 0, "total": 1},
            "enhancement": {"passed": 0, "failed": 1, "error": 0, "pending": 1, "total": 2},
        },
        "gates": gates,
        "blockers": [
            {"gate": "coverage", "phase": "core", "step": "api", "tier": "important", "status": "fail",
             "message": "value 0.71 does not meet >= 85%", "since": "2025-11-12T20:00:00Z"},
            {"gate": "smoke", "phase": "core", "step": "ops", "tier": "critical", "status": "error",
             "message": "command not found: ./smoke.sh", "since": "2025-11-12T20:10:00Z"},
        ],
    }
