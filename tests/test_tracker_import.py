"""`qualitygate import` on the user's own tracker (the seed): counts checked by hand against the document."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from exporter.config.model import parse_config
from exporter.tracker.importer import import_tracker, import_tracker_file
from tracker_support import TRACKERS

SEED = TRACKERS / "seed.md"

# Counted by reading seed.md: 7 "PHASE N" summaries; 11 "Step N" sections; the steps hold
# 6+6+6+5+5+5+5+5+5+5+5 = 58 checkbox gates and one "Automated Checks" line each (11);
# the tier sections hold 5 critical + 4 important + 3 enhancement = 12 checkbox gates.
# 70 checkboxes in all, 69 ticked ("Community adoption: growing" is the one unticked).
DOC_PHASES, DOC_STEPS, DOC_TIER_SECTIONS = 7, 11, 3
DOC_GATE_LINES, DOC_TICKED, DOC_CHECKS = 70, 69, 11

# Each step's "Completion Date: Phase N completion" line, read by hand.
STEPS_BY_PHASE = {
    "core-infrastructure": ["core-infrastructure-stabilization"],  # step 1 -> phase 1
    "testing-quality": ["testing-validation-layer", "todo-backlog-processing"],  # steps 2, 4
    "system-integration-validation": ["system-integration-validation"],  # step 5
    "monitoring-observability": ["monitoring-observability"],  # step 3 -> phase 4
    "performance-optimization": ["production-readiness", "performance-scalability"],  # steps 6, 8
    "extensions-integrations": ["extensions-framework"],  # step 10
    "advanced-features-ecosystem": ["final-system-validation", "documentation-knowledge-base",
                                    "progress-tracking-reporting"],  # steps 7, 9, 11
    "quality-gate-status": ["critical-gates", "important-gates", "enhancement-gates"],
}

# Thresholds as the document writes them -> the expect the importer must produce.
EXPECTS = {
    "mcp-server-uptime": ["> 99.9%"],  # >99.9%
    "agent-health-checks": [">= 100%"],  # 203/203 passing: a ratio
    "error-recovery-rate": ["> 95%"],
    "response-time-p95": ["< 500ms"],
    "zero-critical-bugs": [],  # true: the attestation is the pass condition
    "smoke-tests-passing": [">= 100%"],  # 100%
    "e2e-coverage": [">= 95%"],
    "flaky-test-rate": ["< 2%"],
    "test-execution-time": ["< 10m"],  # <10min parallel
    "grafana-dashboards": [">= 15"],  # >=15 active
    "alert-rule-coverage": [">= 100%"],  # 100% of critical paths
    "metrics-retention": [">= 90d"],  # >=90 days
    "dashboard-load-time": ["< 2s"],
    "todos-processed": [">= 80%"],  # >=80% of backlog completed
    "developer-satisfaction": [">= 4.5"],  # >=4.5/5
    "onboarding-time": ["< 4h"],  # <4hr
    "rollback-procedures": [],  # implemented
    "load-test-1000rps": ["failures == 0"],  # passing: a pushed JUnit report with no failure
    "sdk-development": [],  # completed (Python, TypeScript, Go SDKs)
    "system-uptime": ["> 99.9%"],
    "test-coverage": ["> 85%"],
    "performance": ["< 500ms"],  # <500ms p95
    "integration-tests": [">= 100%"],  # 100% passing
    "documentation": ["> 95%"],  # >95% complete
    "community-adoption": [],  # growing
}


@pytest.fixture(scope="module")
def seed():
    result = import_tracker_file(str(SEED))
    return result, parse_config(result.yaml_text, "seed.yml")


def test_seed_counts_match_the_document(seed):
    result, _ = seed
    model = result.model
    assert len(model.phases) == DOC_PHASES
    assert [p.number for p in model.phases] == [1, 2, 3, 4, 5, 6, 7]
    assert len(model.steps) == DOC_STEPS
    assert [s.number for s in model.steps] == list(range(1, 12))
    assert len(model.tier_steps) == DOC_TIER_SECTIONS
    claims = [c for s in [*model.steps, *model.tier_steps] for c in s.claims]
    assert len(claims) == DOC_GATE_LINES
    assert sum(c.ticked is True for c in claims) == DOC_TICKED
    assert [c.name for c in claims if not c.ticked] == ["Community adoption"]
    assert sum(len(s.checks) for s in model.steps) == DOC_CHECKS
    assert [len(s.claims) for s in model.steps] == [6, 6, 6, 5, 5, 5, 5, 5, 5, 5, 5]
    assert [len(s.claims) for s in model.tier_steps] == [5, 4, 3]
    assert model.title == "Comprehensive Enhancement Plan Tracker"


def test_seed_config_is_accepted_and_has_every_gate(seed):
    _, config = seed
    # 7 document phases + 1 for the tier sections; 11 steps + 3 tier sections;
    # 70 checkbox gates + 11 automated-check gates.
    assert (len(config.phases), len(config.steps), len(config.gates)) == (8, 14, 81)
    assert config.tracker == "comprehensive-enhancement-plan-tracker"
    assert config.title == "Comprehensive Enhancement Plan Tracker"
    assert {p.id: [s.id for s in p.steps] for p in config.phases} == STEPS_BY_PHASE
    # In phase order: steps 1, 2, 4, 5, 3, 6, 8, 10, 7, 9, 11, then the tier sections; a gate per
    # checkbox plus the step's automated check (steps 1-3 have six checkboxes, the others five).
    assert [len(s.gates) for s in config.steps] == [7, 7, 6, 6, 7, 6, 6, 6, 6, 6, 6, 5, 4, 3]
    assert len({g.id for g in config.gates}) == 81


def test_seed_steps_keep_their_teams(seed):
    _, config = seed
    teams = {s.id: s.team for s in config.steps}
    assert teams["core-infrastructure-stabilization"] == "Team A (Core Systems)"
    assert teams["final-system-validation"] == "Team A/B/C/D (All teams)"
    assert teams["critical-gates"] == ""


def test_seed_thresholds_become_expectations(seed):
    _, config = seed
    got = {g.id: g.expect_text for g in config.gates}
    for gate_id, expect in EXPECTS.items():
        assert got[gate_id] == expect, gate_id
    # "Documentation accuracy" appears in steps 5 and 9: the second gets a suffix.
    assert config.gate("documentation-accuracy").step == "system-integration-validation"
    assert config.gate("documentation-accuracy-2").step == "documentation-knowledge-base"


def test_seed_probes_are_inferred_from_automated_checks(seed):
    result, config = seed
    kinds = Counter(g.kind for g in config.gates)
    # 26 claims about what CI makes are push gates (see tests/test_tracker_import_push.py), and the scrape
    # success claim of step 6 is a promql gate on the Prometheus its own check names.
    assert kinds == {"manual": 42, "command": 9, "http": 2, "uptime": 1, "coverage": 5, "json_file": 9, "junit": 9,
                     "sarif": 3, "promql": 1}
    health = config.gate("core-infrastructure-stabilization-automated-check")
    assert health.kind == "http" and health.spec.url == "http://localhost:5005/health"
    assert health.spec.follow_redirects is False  # curl without -L does not follow redirects
    assert health.title == "Automated check: curl -f http://localhost:5005/health"
    prom = config.gate("monitoring-observability-automated-check")
    assert prom.kind == "http" and prom.spec.url == "http://localhost:9090/-/healthy"
    cov = config.gate("testing-validation-layer-automated-check")
    assert cov.kind == "command" and cov.spec.argv == ("./analyze_coverage.sh", "--enforce", "95")
    assert cov.interval == 3600 and cov.timeout == 600
    assert config.gate("system-integration-validation-automated-check").spec.argv == (
        "pytest", "tests/integration/", "-v")
    assert config.gate("production-readiness-automated-check").spec.argv == (
        "python3", "load_test.py", "--rps", "1000", "--duration", "300")
    # The uptime claim of step 1 is measured on the step's own health check.
    uptime = config.gate("mcp-server-uptime")
    assert uptime.kind == "uptime" and uptime.spec.gate == health.id
    assert len(result.automated) == 39 and len(result.manual) == 42 and len(result.pushed) == 26


def test_seed_tiers(seed):
    _, config = seed
    tiers = Counter(g.tier for g in config.gates)
    assert tiers == {"critical": 5, "important": 73, "enhancement": 3}
    assert [g.id for g in config.gates if g.tier == "critical"] == [
        "system-uptime", "test-coverage", "security-scan", "performance", "integration-tests"]
    assert [g.id for g in config.gates if g.tier == "enhancement"] == [
        "ai-ml-integration", "sdk-completeness", "community-adoption"]


def test_seed_manual_gates(seed):
    _, config = seed
    manual = [g for g in config.gates if g.kind == "manual"]
    assert all(g.spec.max_age == 30 * 86400 for g in manual)
    assert config.gate("rollback-procedures").expect == ()


def test_seed_summary(seed):
    result, _ = seed
    lines = result.summary_lines()
    text = "\n".join(lines)
    assert lines[0] == "seed.md: 8 phases, 14 steps, 81 gates (tracker 'comprehensive-enhancement-plan-tracker')"
    assert "70 gate lines (69 ticked by hand), 11 automated checks" in text
    assert "automated: 39 gates (command 9, coverage 5, http 2, json_file 9, junit 9, promql 1, sarif 3, uptime 1)" \
        in text
    assert "pushed from CI: 26 of them" in text
    assert "manual: 42 gates need an attestation" in text
    assert "added phase 'quality-gate-status'" in text
    # Prose sections are reported with their lines, never silently dropped.
    assert "line 3: section 'Overview' (lines 3-5)" in text
    assert "line 279: section 'Current Risks' (lines 279-284)" in text
    assert len(result.model.ignored) == 23
    assert result.model.not_understood == []


def test_seed_yaml_is_commented(seed):
    result, _ = seed
    text = result.yaml_text
    assert text.startswith("# Imported from seed.md by `qualitygate import`.")
    assert "# line 69: [x] Agent health checks: 203/203 passing" in text
    assert "# '203/203 passing' read as a pass ratio" in text
    assert "# fed from CI: qualitygate push agent-health-checks junit.xml --url $QUALITYGATE_URL" in text
    assert "# manual: passes on `qualitygate attest error-recovery-rate --value V`" in text


def test_seed_config_passes_qualitygate_validate(seed, tmp_path):
    result, _ = seed
    path = tmp_path / "seed.yml"
    path.write_text(result.yaml_text, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "exporter", "validate", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "81 gates" in proc.stdout


def test_import_is_deterministic():
    text = SEED.read_text(encoding="utf-8")
    assert import_tracker(text, "seed.md").yaml_text == import_tracker(text, "seed.md").yaml_text
