"""examples/probes/*.yml: every one loads, and the file-based ones show the outcomes their comments claim."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.config.model import load_config
from exporter.engine.evaluate import evaluate
from probe_support import make_ctx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "probes"
KINDS = ("http", "tcp", "tls", "command", "promql", "coverage", "junit", "json_file", "sarif", "file")

# Gates whose outcome does not depend on anything running on this machine.
EXPECTED = {
    "command": {"python-version": "pass", "reports-present": "pass", "coverage-from-a-tool": "pass"},
    "coverage": {"python-line-coverage": "pass", "python-branch-coverage": "fail", "frontend-line-coverage": "pass",
                 "java-branch-coverage": "pass", "coverage-py-json": "pass", "coverage-pushed-from-ci": "fail"},
    "junit": {"all-tests-green": "pass", "enough-tests": "pass", "nightly-e2e": "error", "ci-tests-pushed": "fail"},
    "json_file": {"flaky-rate": "pass", "p95-latency": "pass", "lint-clean": "pass"},
    "sarif": {"bandit-clean": "pass", "no-high-severity": "fail", "no-findings-at-all": "fail",
              "clean-and-no-notes": "pass", "nightly-scan-pushed": "fail"},
    "file": {"coverage-report-present": "pass", "backup-fresh": "fail"},
}


def test_one_example_per_kind():
    assert sorted(p.stem for p in EXAMPLES.glob("*.yml")) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_example_loads_and_uses_its_kind(kind: str):
    config = load_config(str(EXAMPLES / f"{kind}.yml"))
    assert config.gates and {g.kind for g in config.gates} == {kind}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_example_outcomes(kind: str):
    path = EXAMPLES / f"{kind}.yml"
    config = load_config(str(path))
    outcomes = {}
    for gate in config.gates:
        result = await evaluate(gate, make_ctx(timeout=gate.timeout, base_dir=os.path.dirname(path)))
        outcomes[gate.id] = result.outcome
    assert outcomes == EXPECTED[kind]
