"""Helpers for the tracker, report and badge tests: status documents built by hand."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from exporter.model import Result
from exporter.report.status import progress_status
from exporter.state.memory import State

TRACKERS = Path(__file__).resolve().parent / "testdata" / "trackers"
JUNIT_XSD = Path(__file__).resolve().parent / "testdata" / "junit.xsd"


def status_from_config(config: Any, outcomes: dict[str, dict[str, Any]] | None = None,
                       generated_at: str = "2025-11-12T20:20:00Z") -> dict[str, Any]:
    """The exporter's own /api/progress/status document for a loaded config, with `outcomes`
    (gate id -> status, value, message, duration) recorded at `generated_at`; others are pending."""
    at = datetime.datetime.fromisoformat(generated_at.replace("Z", "+00:00")).timestamp()
    state = State()
    for gate_id, o in (outcomes or {}).items():
        if o.get("status", "pending") == "pending":
            continue
        value = o.get("value")
        state.record(Result(gate_id, o["status"], at, o.get("duration", 0.01),
                            {} if value is None else {"value": float(value)}, o.get("message", "")))
    return progress_status(config, state, now=at)


def shape(config: Any) -> list[Any]:
    """Everything about a config's structure that an import -> render -> import round trip must keep."""
    return [(p.id, p.title, [(s.id, s.title, s.team, [(g.id, g.title, g.tier, g.kind, repr(g.spec), g.expect_text)
                                                       for g in s.gates]) for s in p.steps])
            for p in config.phases]


def small_status() -> dict[str, Any]:
    """A hand-made status document: two phases, three steps, one gate of every status."""
    gates = [
        {"id": "health", "phase": "core", "step": "api", "title": "Health endpoint", "tier": "critical",
         "kind": "http", "status": "pass", "value": 0.012, "measurements": {"status": 200, "response_time": 0.012},
         "expect": ["response_time < 500ms"], "last_evaluation": "2025-11-12T20:19:58Z",
         "last_pass": "2025-11-12T20:19:58Z", "message": "", "duration_seconds": 0.012},
        {"id": "coverage", "phase": "core", "step": "api", "title": "Line coverage", "tier": "important",
         "kind": "coverage", "status": "fail", "value": 0.71, "expect": [">= 85%"],
         "last_evaluation": "2025-11-12T20:19:58Z", "last_pass": None, "message": "value 0.71 does not meet >= 85%",
         "duration_seconds": 0.004},
        {"id": "smoke", "phase": "core", "step": "ops", "title": "Smoke tests <script>", "tier": "critical",
         "kind": "command", "status": "error", "value": None, "expect": [],
         "last_evaluation": "2025-11-12T20:19:59Z", "last_pass": None,
         "message": "command not found: ./smoke.sh | tail\x07", "duration_seconds": 0.001},
        {"id": "docs-reviewed", "phase": "docs", "step": "review", "title": "Docs reviewed", "tier": "enhancement",
         "kind": "manual", "status": "fail", "value": None, "expect": [], "last_evaluation": "2025-11-12T20:19:59Z",
         "last_pass": None, "message": "no attestation yet (qualitygate attest)", "duration_seconds": 0.0},
        {"id": "sla", "phase": "docs", "step": "review", "title": "SLA", "tier": "enhancement",
         "kind": "uptime", "status": "pending", "value": None, "expect": ["> 99.9%"], "last_evaluation": None,
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
