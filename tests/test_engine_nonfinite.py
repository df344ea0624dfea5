"""Fail closed on non-finite measurements: NaN and infinities are no measurement, whatever `expect` says.

The same inputs go through evaluate(), `qualitygate check` and a real `serve` (whose JSON API must
stay strict JSON), and the evaluation's protection is tested by breaking judging and recording.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, one_step_tracker, parse_metrics, sample, wait_for
from exporter.config.model import Config, parse_config
from exporter.engine import evaluate as evaluate_module
from exporter.engine.evaluate import evaluate
from exporter.model import Result
from exporter.probes import ProbeContext

NAN = "measured NaN: no measurement"
INF = "measured +Inf: no measurement"
DIGITS = "9" * 400  # float() of this is inf

GATES = f"""
- {{id: nan-ne, command: {{shell: "echo v=nan", value_regex: "v=(\\\\S+)"}}, expect: "!= 0"}}
- {{id: nan-lt, command: {{shell: "echo v=nan", value_regex: "v=(\\\\S+)"}}, expect: "< 0.01"}}
- {{id: inf-gt, command: {{shell: "echo v=inf", value_regex: "v=(\\\\S+)"}}, expect: "> 5"}}
- {{id: minus-inf, command: {{shell: "echo v=-inf", value_regex: "v=(\\\\S+)"}}, expect: "< 5"}}
- {{id: digits, command: {{shell: "echo v={DIGITS}", value_regex: "v=(\\\\S+)"}}, expect: "> 5"}}
- {{id: json-nan, json_file: {{path: nan.json, json_path: $.ratio}}, expect: ">= 0"}}
- {{id: healthy, command: {{shell: "echo v=3", value_regex: "v=(\\\\S+)"}}, expect: "> 2"}}
"""
EXPECTED = {"nan-ne": NAN, "nan-lt": NAN, "inf-gt": INF, "minus-inf": "measured -Inf: no measurement",
            "digits": INF, "json-nan": NAN}


def strict(text: str) -> object:
    """json.loads that fails the test on NaN, Infinity or -Infinity."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c} in {text[:200]}"))


@pytest.fixture
def tracker(tmp_path: Path) -> Path:
    (tmp_path / "nan.json").write_text('{"ratio": NaN}')  # Python's json (and others) write this
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(GATES, tracker="nonfinite"))
    return path


def ctx(config: Config, gate_id: str) -> ProbeContext:
    gate = config.gate(gate_id)
    assert gate is not None
    return ProbeContext(gate_id=gate.id, timeout=gate.timeout, base_dir=config.base_dir)


async def test_non_finite_measurements_are_errors_whatever_expect_says(tracker: Path):
    config = parse_config(tracker.read_text(), str(tracker))
    for gate in config.gates:
        result = await evaluate(gate, ctx(config, gate.id))
        if gate.id == "healthy":
            assert (result.outcome, result.value) == ("pass", 3.0)
            continue
        assert (result.outcome, result.message) == ("error", EXPECTED[gate.id]), gate.id
        assert result.value is None, "a non-finite value is left out of the result"
        strict(json.dumps(result.to_json(), allow_nan=False))


def test_check_reports_them_as_errors_without_a_traceback(tracker: Path):
    proc = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(tracker)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # errors are not passes
    assert "Traceback" not in proc.stdout + proc.stderr
    for gate_id, message in EXPECTED.items():
        line = next(ln for ln in proc.stdout.splitlines() if gate_id in ln)
        assert message in line, line


@pytest.mark.slow
def test_serve_shows_errors_and_keeps_the_api_strict_json(tracker: Path, serve):
    s = serve(tracker)
    wait_for(lambda: 'gate_passed{tracker="nonfinite",phase="p",step="s",gate="digits"' in s.get("/metrics")[1],
             timeout=30, what="every gate evaluated")
    m = parse_metrics(s.get("/metrics")[1])
    for gate_id in EXPECTED:
        assert sample(m, "gate_passed", gate=gate_id) == 0, gate_id
        assert sample(m, "gate_probe_error", gate=gate_id) == 1, gate_id
        assert sample(m, "gate_value", gate=gate_id) is None, gate_id
    assert sample(m, "gate_passed", gate="healthy") == 1
    status = strict(s.get("/api/progress/status")[1])
    assert isinstance(status, dict)
    by = {g["id"]: g for g in status["gates"]}
    for gate_id, message in EXPECTED.items():
        assert (by[gate_id]["status"], by[gate_id]["message"], by[gate_id]["value"]) == ("error", message, None)
    strict(s.get("/api/gates")[1])
    strict(s.get("/api/gates/nan-lt")[1])
    assert "Traceback" not in s.log()


async def test_an_exception_while_judging_is_an_error_outcome_counted_and_logged(
        tracker: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    config = parse_config(tracker.read_text(), str(tracker))

    def broken(gate: object, m: object) -> tuple[str, str]:
        raise ZeroDivisionError("judging broke")

    monkeypatch.setattr(evaluate_module, "judge", broken)
    faults = evaluate_module.Faults()
    with caplog.at_level(logging.ERROR, "qualitygate.engine"):
        result = await evaluate(config.gates[-1], ctx(config, "healthy"), faults)
    assert (result.outcome, result.message) == ("error", "internal error judging: ZeroDivisionError: judging broke")
    assert faults.counts["judge"] == 1
    assert caplog.records[-1].exc_info is not None, "logged with its traceback"


async def test_an_exception_while_recording_replaces_the_old_status_with_an_error():
    from exporter.engine.scheduler import Scheduler

    config = parse_config(one_step_tracker('- {id: g, command: {shell: "true"}, interval: 1h}'))
    recorded: list[Result] = []

    def on_result(gate: object, result: Result) -> None:
        if result.outcome == "pass":
            raise RuntimeError("recording broke")
        recorded.append(result)

    sched = Scheduler(lambda g: ProbeContext(gate_id=g.id, timeout=g.timeout), on_result)
    sched.set_gates(config.gates)
    gate = config.gates[0]
    await sched._evaluate(("t", gate.id), gate)
    assert [(r.outcome, r.message) for r in recorded] == [
        ("error", "internal error recording the result: RuntimeError: recording broke")]
    assert sched.faults.counts["record"] == 1
