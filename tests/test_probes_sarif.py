"""`sarif` gates: real Bandit output, and hand-made SARIF 2.1.0 logs for levels, suppressions, runs, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporter.engine.evaluate import evaluate
from exporter.probes import KINDS, ProbeError
from exporter.probes.sarif import SARIFSpec
from exporter.probes.sources import PushSource
from probe_support import config_errors, make_ctx, parse_gate, run_probe

SOURCES = Path(__file__).parent / "testdata" / "reports" / "sarif"


def bandit(tmp_path: Path, source: str) -> Path:
    """Run the real Bandit on one file and return its SARIF log."""
    out = tmp_path / f"{Path(source).stem}.sarif"
    shutil.copy(SOURCES / source, tmp_path / source)
    proc = subprocess.run([sys.executable, "-m", "bandit", "-q", "-f", "sarif", "-o", str(out), str(tmp_path / source)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr  # 1: issues found
    return out


@pytest.fixture(scope="module")
def bandit_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bandit")
    return {"finding": bandit(tmp, "finding.py"), "clean": bandit(tmp, "clean.py")}


async def test_real_bandit_finding_counts_by_level(bandit_logs: dict[str, Path]):
    # finding.py: subprocess import (B404, low: note), shell=True (B602, high: error), assert (B101, low: note).
    path = str(bandit_logs["finding"])
    m = await run_probe("sarif", SARIFSpec(path=path))
    assert m.values == {"value": 1, "errors": 1, "warnings": 0, "notes": 2}
    assert not m.ok and m.message.endswith("1 result at or above warning (1 error, 0 warnings, 2 notes)")
    m = await run_probe("sarif", SARIFSpec(path=path, level="note"))
    assert m.value == 3 and not m.ok
    m = await run_probe("sarif", SARIFSpec(path=path, level="error"))
    assert m.value == 1


async def test_real_bandit_clean_file_passes(bandit_logs: dict[str, Path]):
    m = await run_probe("sarif", SARIFSpec(path=str(bandit_logs["clean"]), level="note"))
    assert m.ok and m.values == {"value": 0, "errors": 0, "warnings": 0, "notes": 0}


async def test_real_bandit_log_pushed_parses_the_same(bandit_logs: dict[str, Path]):
    spec = SARIFSpec(push=PushSource(max_age=86400))
    m = KINDS["sarif"].parse_report(spec, bandit_logs["finding"].read_bytes(), "bandit.sarif")
    assert m.values["errors"] == 1 and not m.ok


def log(*runs: dict[str, Any], version: str = "2.1.0") -> bytes:
    return json.dumps({"version": version, "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
                       "runs": list(runs)}).encode()


def run_of(results: list[dict[str, Any]], rules: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {"tool": {"driver": {"name": "t", "rules": rules or []}}, "results": results, **extra}


def parse(data: bytes, level: str = "warning"):
    return KINDS["sarif"].parse_report(SARIFSpec(push=PushSource(max_age=60), level=level), data, "scan.sarif")


def test_suppressed_results_are_left_out():
    results = [
        {"ruleId": "a", "level": "error", "suppressions": [{"kind": "inSource"}]},  # no status: accepted
        {"ruleId": "a", "level": "error", "suppressions": [{"kind": "external", "status": "accepted"}]},
        {"ruleId": "a", "level": "error", "suppressions": [{"kind": "external", "status": "underReview"}]},
        {"ruleId": "a", "level": "error", "suppressions": [{"kind": "external", "status": "rejected"}]},
        {"ruleId": "a", "level": "error", "suppressions": [{"kind": "inSource"}, {"kind": "external",
                                                                                   "status": "rejected"}]},
        {"ruleId": "a", "level": "error", "suppressions": []},
        {"ruleId": "a", "level": "error", "baselineState": "absent"},  # gone since the baseline
        {"ruleId": "a", "level": "error", "baselineState": "new"},
    ]
    assert parse(log(run_of(results))).values["errors"] == 5


def test_level_defaults_follow_sarif():
    rules = [{"id": "R1", "defaultConfiguration": {"level": "error"}}, {"id": "R2"},
             {"id": "R3", "defaultConfiguration": {"level": "note"}}]
    results = [
        {"ruleId": "R1"},                          # the rule's default level: error
        {"ruleIndex": 0},                          # by index
        {"rule": {"id": "R3"}},                    # by reference: note
        {"ruleId": "R2"},                          # rule without a default: warning
        {"ruleId": "unknown"},                     # no rule at all: warning
        {"ruleId": "R1", "level": "note"},         # its own level wins
        {"ruleId": "R1", "kind": "pass"},          # not a failure: level none, never counted
        {"ruleId": "R1", "level": "none"},
    ]
    m = parse(log(run_of(results, rules)))
    assert m.values == {"value": 4, "errors": 2, "warnings": 2, "notes": 2}


def test_rules_of_extensions_by_tool_component():
    run = run_of([{"rule": {"index": 0, "toolComponent": {"index": 0}}}])
    run["tool"]["extensions"] = [{"name": "ext", "rules": [{"id": "X", "defaultConfiguration": {"level": "note"}}]}]
    assert parse(log(run)).values["notes"] == 1


def test_runs_are_summed():
    m = parse(log(run_of([{"level": "error"}]), run_of([{"level": "warning"}, {"level": "note"}]), run_of([])),
              level="note")
    assert m.values == {"value": 3, "errors": 1, "warnings": 1, "notes": 1}
    assert parse(log(run_of([]), run_of([]))).ok


@pytest.mark.parametrize("data, message", [
    (b"{not json", "not valid JSON"),
    (b"[]", r"not a SARIF log \(no runs\)"),
    (log(run_of([]), version="2.0.0"), r"SARIF version '2.0.0', only 2.1.0 is read"),
    (json.dumps({"version": "2.1.0", "runs": {}}).encode(), "runs is not an array"),
    (log({"tool": {"driver": {"name": "t"}}}), r"runs\[0\] has no results"),
    (log(run_of([]), {"tool": {}, "results": None}), r"runs\[1\] has no results"),
    (log(run_of([], invocations=[{"executionSuccessful": False}])), "did not run successfully"),
    (log(run_of([{"level": "fatal"}])), r"runs\[0\]\.results\[0\]: unknown level 'fatal'"),
    (log(run_of(["oops"])), r"runs\[0\]\.results\[0\] is not an object"),
    (log(run_of([{"suppressions": "yes"}])), r"suppressions is not an array"),
], ids=lambda v: None if isinstance(v, bytes) else v[:30])
def test_malformed_logs_are_errors(data: bytes, message: str):
    with pytest.raises(ProbeError, match=f"^scan.sarif: .*{message}"):
        parse(data)


async def test_sarif_gate_from_config(tmp_path: Path, bandit_logs: dict[str, Path]):
    shutil.copy(bandit_logs["finding"], tmp_path / "bandit.sarif")
    gate = parse_gate(tmp_path, """
        - id: security-scan
          sarif: {path: bandit.sarif, level: error}
    """)
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "fail" and result.measurements["errors"] == 1
    assert result.message == "1 result at or above error (1 error, 0 warnings, 2 notes)"
    (tmp_path / "bandit.sarif").write_text("{}")
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "error" and result.message == "bandit.sarif: not a SARIF log (no runs)"
    key = "phases[0].steps[0].gates[0]"
    assert config_errors(tmp_path, "- id: s\n  sarif: {path: x.sarif, level: high}") == [
        f"{key}.sarif.level: must be one of error, warning, note, got 'high'"]
    pushed = parse_gate(tmp_path, "- id: s\n  sarif: {push: {max_age: 1d, branch: main}, level: error}")
    assert pushed.spec.push.branch == "main" and pushed.spec.level == "error"
