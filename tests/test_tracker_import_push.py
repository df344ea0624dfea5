"""`qualitygate import` makes claims about what CI produces pushable: the kinds, the push lines, a real push."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from exporter.config.model import parse_config
from exporter.tracker.importer import GatePlan, import_tracker, import_tracker_file
from exporter.tracker.inplace import rewrite
from tests.conftest import ROOT
from tracker_support import TRACKERS, status_from_config

SEED = Path(__file__).resolve().parent / "testdata" / "trackers" / "seed.md"  # the user's tracker, byte for byte
CI = TRACKERS / "ci_claims.md"
PUSH = {"push": {"max_age": "1d", "branch": "main"}}


def one(line: str) -> GatePlan:
    gates = import_tracker(f"# T\n\n## Phase 1: P\n\n### Step 1: S\n\n- [ ] {line}\n").gates
    assert len(gates) == 1
    return gates[0]


@pytest.mark.parametrize(("line", "kind", "spec", "expect"), [
    ("Unit coverage: >=85%", "coverage", PUSH, (">= 85%",)),
    ("Branch coverage: >80%", "coverage", {**PUSH, "metric": "branch"}, ("> 80%",)),
    ("Integration tests: 100% passing", "junit", PUSH, (">= 100%",)),
    ("Agent health checks: 203/203 passing", "junit", PUSH, (">= 100%",)),
    ("Zero test failures: true", "junit", PUSH, ("failures == 0",)),
    ("Nightly test suite: all tests passing", "junit", PUSH, ("failures == 0",)),
    ("Load test 1000rps: passing", "junit", PUSH, ("failures == 0",)),
    ("API schema validation: 100%", "junit", PUSH, (">= 100%",)),
    ("Security scan: clean", "sarif", {**PUSH, "level": "warning"}, ("== 0",)),
    ("Zero critical vulnerabilities: true", "sarif", {**PUSH, "level": "error"}, ("== 0",)),
    ("Dependency scan: at most 3", "sarif", {**PUSH, "level": "warning"}, ("<= 3",)),
    ("Response time p95: <500ms", "json_file", {**PUSH, "json_path": "$.response_time_p95"}, ("< 500ms",)),
    ("Performance: <500ms p95", "json_file", {**PUSH, "json_path": "$.performance"}, ("< 500ms",)),
    ("Build time p95: <15min", "json_file", {**PUSH, "json_path": "$.build_time_p95"}, ("< 15m",)),
    ("Flaky test rate: <2%", "json_file", {**PUSH, "json_path": "$.flaky_test_rate"}, ("< 2%",)),
    ("Coverage (checked every 6 hours): >= 80%", "coverage", {"push": {"max_age": "6h", "branch": "main"}},
     (">= 80%",)),
    ("Weekly load test latency: <2s", "json_file", {"push": {"max_age": "7d", "branch": "main"},
                                                    "json_path": "$.weekly_load_test_latency"}, ("< 2s",)),
    ("TLS certificate: >30 days on shop.example.org:443", "tls", {"address": "shop.example.org:443"}, ("> 30d",)),
    ("Certificate valid: https://api.example.com", "tls", {"address": "api.example.com:443"}, ()),
])
def test_ci_claims_become_machine_sourced_gates(line, kind, spec, expect):
    gate = one(line)
    assert (gate.kind, gate.spec, gate.expect) == (kind, spec, expect)
    assert gate.source == line  # render --in-place finds the line by it


@pytest.mark.parametrize("line", [
    "Zero critical bugs: true",  # bugs are no scan
    "API coverage: 100%",  # no coverage report measures an API's documentation
    "Alert rule coverage: 100% of critical paths",
    "Onboarding time: <4hr",  # a person's time, not a CI measurement
    "20% performance improvement: achieved",  # no threshold for a json_file gate to compare
    "Performance baselines: established",
    "Security audit: scheduled",
    "Coverage: good",  # a coverage gate needs a number the claim does not state
    "Build time: fast",
    "SSL certificate: renewed",  # no address in the text: no tls gate
    "Regression rate: <1%",
])
def test_claims_without_what_a_kind_needs_stay_manual(line):
    assert one(line).kind == "manual"


def test_ci_tracker_imports_validates_and_prints_the_push_lines(tmp_path):
    out = tmp_path / "ci.yml"
    done = subprocess.run([sys.executable, "-m", "exporter", "import", str(CI), "-o", str(out)], capture_output=True,
                          text=True, timeout=60, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    lines = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("qualitygate push ")]
    assert lines[0] == ("qualitygate push unit-coverage coverage.xml --url $QUALITYGATE_URL "
                        "--tracker release-readiness-tracker")
    text = out.read_text(encoding="utf-8")
    config = parse_config(text, str(out))
    kinds = Counter(g.kind for g in config.gates)
    assert kinds == {"coverage": 1, "junit": 4, "json_file": 4, "sarif": 2, "tls": 1, "manual": 8}
    pushed = [g.id for g in config.gates if getattr(g.spec, "push", None) is not None]
    assert len(lines) == len(pushed) == 11 and all(f"qualitygate push {gid} " in text for gid in pushed)
    assert all(config.gate(gid).spec.push.max_age == 86400 for gid in pushed)
    assert "# fed from CI: qualitygate push security-scan results.sarif" in text
    assert config.gate("response-time-p95").spec.json_path == "$.response_time_p95"  # written $$: no expansion
    assert config.gate("budget").source == "Budget: under $5 ${HOME}"
    validated = subprocess.run([sys.executable, "-m", "exporter", "validate", str(out)], capture_output=True,
                               text=True, timeout=60, cwd=str(ROOT))
    assert validated.returncode == 0 and "20 gates" in validated.stdout, validated.stdout + validated.stderr


def test_in_place_render_finds_every_gate_of_the_ci_tracker():
    text = CI.read_text(encoding="utf-8")
    config = parse_config(import_tracker(text, "ci_claims.md").yaml_text, "ci.yml")
    outcomes = {g.id: {"status": "fail", "value": 0.5} for g in config.gates}
    outcomes["unit-coverage"] = {"status": "pass", "value": 0.9}
    out = rewrite(text, config, status_from_config(config, outcomes), "ci_claims.md")
    boxes = [ln for ln in out.text.split("\n") if ln.startswith("- [")]
    assert len(boxes) == len(config.gates) == 20
    # Every box now carries its gate's status: none was left as the document wrote it.
    assert sum(ln.startswith("- [x]") for ln in boxes) == 1 and all(" — " in ln for ln in boxes), boxes


def _numbers(text: str) -> set[float]:
    return {float(n.replace(",", "")) for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


def test_seed_machine_sources_state_only_the_documents_numbers():
    result = import_tracker_file(str(SEED))
    machine = [g for g in result.gates if g.kind != "manual"]
    assert (len(result.gates), len(machine), len(result.pushed)) == (81, 39, 26)
    for g in machine:
        wanted = set().union(*(_numbers(c) for c in g.expect)) if g.expect else set()
        stated = _numbers(g.source)
        ratio = re.search(r"(\d+)/(\d+)", g.source)
        if ratio and ratio[1] == ratio[2]:
            stated.add(100.0)  # "203/203 passing" is 100% of them
        if re.search(r"\b(?:zero|clean|passing|true)\b", g.source, re.I):
            stated.add(0.0)  # "clean", "zero failures": a count of zero
        assert wanted <= stated, (g.id, g.source, g.expect)


@pytest.fixture
def ci_exporter(serve, tmp_path):
    text = ("# Shop\n\n## Phase 1: Release\n\n### Step 1: CI\n\n- [ ] Unit coverage: >=85%\n"
            "- [ ] Integration tests: 100% passing\n- [ ] Security scan: clean\n- [ ] Response time p95: <500ms\n")
    yaml_text = import_tracker(text, "shop.md").yaml_text
    assert "# push_tokens_file: ci-push-tokens" in yaml_text
    (tmp_path / "tokens").write_text("tok-ci\n")
    path = tmp_path / "shop.yml"
    path.write_text(yaml_text.replace("# push_tokens_file: ci-push-tokens", "push_tokens_file: tokens"))
    served = serve(path, "--storage.path", str(tmp_path / "state.db"))
    return served, import_tracker(text, "shop.md").push_lines()


def _run(line: str, report: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [env["QUALITYGATE_URL"] if a == "$QUALITYGATE_URL" else a for a in shlex.split(line)]
    assert argv[:2] == ["qualitygate", "push"]
    argv[3] = str(report)
    return subprocess.run([sys.executable, "-m", "exporter", *argv[1:]], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT), env=env)


def test_printed_push_lines_feed_their_gates(ci_exporter, tmp_path):
    served, lines = ci_exporter
    by_gate = {ln.split()[2]: ln for ln in lines}
    assert list(by_gate) == ["unit-coverage", "integration-tests", "security-scan", "response-time-p95"]
    (tmp_path / "client-token").write_text("tok-ci\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB", "CI_", "QUALITYGATE_"))}
    env.update({"QUALITYGATE_URL": served.url, "QUALITYGATE_TOKEN_FILE": str(tmp_path / "client-token"),
                "GITHUB_ACTIONS": "true", "GITHUB_SHA": "c" * 40, "GITHUB_REF_NAME": "main"})

    cov = tmp_path / "coverage.xml"
    cov.write_text('<?xml version="1.0"?>\n<coverage line-rate="0.9" version="1" timestamp="1">'
                   '<packages/></coverage>\n')
    done = _run(by_gate["unit-coverage"], cov, env)
    assert done.returncode == 0 and done.stdout.startswith("PASS"), done.stdout + done.stderr

    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuite name="it" tests="2"><testcase name="a"/><testcase name="b">'
                     '<failure message="boom"/></testcase></testsuite>\n')
    done = _run(by_gate["integration-tests"], junit, env)
    assert done.returncode == 1 and done.stdout.startswith("FAIL"), done.stdout + done.stderr

    # A real Bandit scan: shell=True is an error-level finding, so "Security scan: clean" fails; a clean file passes.
    (tmp_path / "bad.py").write_text("import subprocess\n\n\ndef run(cmd):\n"
                                     "    return subprocess.call(cmd, shell=True)\n")
    (tmp_path / "good.py").write_text("def add(a, b):\n    return a + b\n")
    for source, code in (("bad.py", 1), ("good.py", 0)):
        sarif = tmp_path / f"{source}.sarif"
        subprocess.run([sys.executable, "-m", "bandit", "-q", "-f", "sarif", "-o", str(sarif), str(tmp_path / source)],
                       capture_output=True, timeout=120, check=False)
        assert json.loads(sarif.read_text())["version"] == "2.1.0"
        done = _run(by_gate["security-scan"], sarif, env)
        assert done.returncode == code, (source, done.stdout + done.stderr)

    perf = tmp_path / "report.json"
    perf.write_text(json.dumps({"response_time_p95": 0.42}))
    done = _run(by_gate["response-time-p95"], perf, env)
    assert done.returncode == 0, done.stdout + done.stderr
    gates = {g["id"]: g for g in json.loads(served.get("/api/gates")[1])["gates"]}
    assert {gid: gates[gid]["status"] for gid in by_gate} == {
        "unit-coverage": "pass", "integration-tests": "fail", "security-scan": "pass", "response-time-p95": "pass"}
    assert gates["unit-coverage"]["evidence"]["commit"] == "c" * 40
