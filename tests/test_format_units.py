"""The one formatter (issue 16): a table of values and sentences, then every output that shows them.

`check` runs as a real subprocess, the reports are rendered from a real check's status document,
and the log line comes from a real `serve`; all must say the same sentence in the same units.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import ROOT, one_step_tracker, parse_metrics, sample, wait_for
from exporter.config import units
from exporter.config.model import parse_config
from exporter.report.ci import junit_xml, markdown_table

CONFIG = one_step_tracker("""
- {id: cov, title: Line coverage, coverage: {path: cov.json}, expect: ">= 85%"}
- {id: api, http: {url: "http://127.0.0.1:1/"}, expect: ["status == 200", "response_time < 500ms"]}
- {id: api-s, http: {url: "http://127.0.0.1:1/"}, expect: "response_time < 1s"}
- {id: api-json, http: {url: "http://127.0.0.1:1/", json_path: "$.n"}, expect: "value > 10"}
- {id: up, uptime: {gate: api}, expect: ">= 99.9%"}
- {id: fresh, file: {path: x}, expect: "age < 1d"}
- {id: slow, command: {argv: ["true"]}, expect: "duration <= 2m"}
- {id: bugs, sarif: {path: r.sarif}, expect: "value <= 3"}
- {id: flag, promql: {query: up, url: "http://127.0.0.1:1"}, expect: "== true"}
- {id: not5, command: {argv: ["true"]}, expect: "exit_code != 5"}
""")


@pytest.fixture(scope="module")
def gates():
    return parse_config(CONFIG).by_id


@pytest.mark.parametrize("gate, index, value, expected", [
    # the fail forms
    ("cov", 0, 0.714286, "coverage 71.4 % is below 85 %"),
    ("cov", 0, 0.8496, "coverage 84.96 % is below 85 %"),  # never "85 % is below 85 %"
    ("cov", 0, 0.849999, "coverage 84.9999 % is below 85 %"),
    ("api", 0, 503, "status 503 is not 200"),
    ("api", 1, 0.71, "response_time 710 ms is not below 500 ms"),
    ("api-s", 0, 2.5, "response_time 2.5 s is not below 1 s"),
    ("api-json", 0, 7.25, "value 7.25 is not above 10"),
    ("up", 0, 0.9677, "uptime 96.8 % is below 99.9 %"),
    ("up", 0, 0.99899, "uptime 99.899 % is below 99.9 %"),
    ("fresh", 0, 129600.0, "age 1.5 d is not below 1 d"),
    ("slow", 0, 150.0, "duration 2.5 min is above 2 min"),
    ("bugs", 0, 7, "results 7 is above 3"),
    ("flag", 0, 0.0, "value 0 is not 1"),
    ("not5", 0, 5, "exit_code 5 must not be 5"),
    # the pass forms
    ("cov", 0, 0.912, "coverage 91.2 % is at least 85 %"),
    ("cov", 0, 0.85, "coverage 85 % is at least 85 %"),
    ("api", 1, 0.027, "response_time 27 ms is below 500 ms"),
    ("api", 1, 0.00134, "response_time 1.34 ms is below 500 ms"),
    ("api-s", 0, 0.0421, "response_time 42.1 ms is below 1 s"),  # far below the written unit: its own
    ("up", 0, 0.99951, "uptime 99.95 % is at least 99.9 %"),
    ("fresh", 0, 43200.0, "age 12 h is below 1 d"),
    ("bugs", 0, 0, "results 0 is at most 3"),
    ("not5", 0, 0, "exit_code 0 is not 5"),
])
def test_sentences(gates, gate, index, value, expected):
    assert units.gate_sentence(gates[gate], gates[gate].expect[index], value) == expected


@pytest.mark.parametrize("value, unit, expected", [
    (0.714286, "%", "71.4 %"), (1.0, "%", "100 %"), (0.0, "%", "0 %"), (0.027, "ms", "27 ms"),
    (1.5, "ms", "1500 ms"), (90.0, "m", "1.5 min"), (3 * 86400.0, "d", "3 d"), (2.5 * 1024 * 1024, "bytes", "2.5 MiB"),
    (12.0, None, "12"), (0.0269834, None, "0.0269834"), (float("nan"), "%", "NaN"), (float("inf"), None, "+Inf"),
])
def test_show(value, unit, expected):
    assert units.show(value, unit) == expected


@pytest.mark.parametrize("ratio, decimals, expected", [
    (2 / 3, 1, "66.7%"), (1 / 3, 1, "33.3%"), (199 / 200, 0, "99%"), (0.9999, 1, "99.9%"), (1.0, 1, "100%"),
    (0.0, 1, "0%"), (1e-7, 1, "0.1%"), (0.29, 1, "29%"), (0.57, 0, "57%"), (0.025, 1, "2.5%"),
])
def test_percent_rounds_but_never_claims_all_or_none(ratio, decimals, expected):
    assert units.percent(ratio, decimals) == expected


@pytest.mark.parametrize("gate, family", [
    ("cov", "percent"), ("api", "seconds"), ("api-json", "number"), ("up", "percent"), ("fresh", "seconds"),
    ("bugs", "number"), ("flag", "number"),
])
def test_family_is_what_gate_info_unit_says(gates, gate, family):
    assert units.family(gates[gate]) == family


@pytest.mark.parametrize("doc, expected", [
    ({"kind": "coverage", "value": 0.714, "expect": [">= 85%"]}, "71.4 %"),
    ({"kind": "http", "value": 0.012, "measurements": {"response_time": 0.012}, "expect": []}, "12 ms"),
    ({"kind": "http", "value": 42.0, "measurements": {"response_time": 0.012}, "expect": ["> 10"]}, "42"),
    ({"kind": "file", "value": 7200.0, "expect": ["age < 1d"]}, "2 h"),
    ({"kind": "promql", "value": 0.5, "expect": ["< 1"]}, "0.5"),
    ({"kind": "coverage", "value": None}, ""),
])
def test_document_values(doc, expected):
    assert units.document_value(doc) == expected


# --- every output, from real runs --------------------------------------------------------------

def _tracker(tmp_path: Path) -> Path:
    (tmp_path / "cov.json").write_text(json.dumps({"totals": {"percent_covered": 71.4286, "covered_lines": 5,
                                                              "num_statements": 7}}))
    path = tmp_path / "gates.yml"
    path.write_text(one_step_tracker(f"""
        - {{id: cov, title: Line coverage, tier: critical, coverage: {{path: "{tmp_path / 'cov.json'}"}},
           expect: ">= 85%"}}
        - {{id: quick, tier: critical, command: {{argv: ["{sys.executable}", "-c", "pass"]}}, expect: "duration < 1h"}}
    """, tracker="fmt"))
    return path


SENTENCE = "coverage 71.4 % is below 85 %"


def test_check_and_its_reports_say_the_same_sentence(tmp_path):
    config = _tracker(tmp_path)
    out = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                          "--junit-xml", str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "r.md"),
                          "--json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 1, out.stdout + out.stderr
    lines = {line.split()[2]: line for line in out.stdout.splitlines() if line[:4] in ("PASS", "FAIL")}
    assert f"  {SENTENCE}  [" in lines["cov"], lines
    assert lines["quick"].startswith("PASS") and "duration " in lines["quick"] and " is below 1 h" in lines["quick"]
    assert "0.714" not in out.stdout and "does not satisfy" not in out.stdout
    assert out.stdout.rstrip().endswith("fmt: 1/2 gates passed, 1 failed, 0 errors")

    doc = json.loads((tmp_path / "r.json").read_text())
    cov = next(g for g in doc["gates"] if g["id"] == "cov")
    assert cov["value"] == pytest.approx(0.714286, abs=1e-6) and cov["message"] == SENTENCE  # base units apart

    md = (tmp_path / "r.md").read_text()
    assert md.splitlines()[0] == "### ❌ Quality gates: T: 1 of 2 passed (50%)"
    row = next(line for line in md.splitlines() if "`cov`" in line)
    assert "| 71.4 % | >= 85% | coverage 71.4 % is below 85 % |" in row

    failure = ET.parse(tmp_path / "j.xml").getroot().find(".//testcase[@name='cov']/failure")
    assert failure is not None and failure.get("message") == SENTENCE
    assert "value: 71.4 %" in (failure.text or "") and "0.714" not in (failure.text or "")
    assert junit_xml(doc).count(SENTENCE) == 2  # the message attribute and the details


def test_two_of_three_is_66_7_percent_in_the_markdown():
    gate = {"phase": "p", "step": "s", "tier": "critical", "kind": "coverage", "expect": [">= 85%"], "value": 0.9}
    doc = {"tracker": "t", "title": "T", "gates": [dict(gate, id=f"g{i}", status=s)
                                                   for i, s in enumerate(("pass", "pass", "fail"))]}
    assert markdown_table(doc).splitlines()[0] == "### ❌ Quality gates: T: 2 of 3 passed (66.7%)"


def test_a_real_serve_logs_and_exports_the_same(tmp_path, serve):
    s = serve(_tracker(tmp_path), "--web.external-url", "https://qg.example.com/")
    wait_for(lambda: "gate status changed" in s.log() and "gate=cov" in s.log(), what="the cov status line")
    line = next(x for x in s.log().splitlines() if "gate status changed" in x and "gate=cov" in x)
    assert f'message="{SENTENCE}"' in line, line
    detail = json.loads(s.get("/api/gates/cov")[1])
    assert detail["message"] == SENTENCE and detail["value"] == pytest.approx(0.714286, abs=1e-6)
    metrics = parse_metrics(s.get("/metrics")[1])
    assert sample(metrics, "qualitygate_web_info", external_url="https://qg.example.com") == 1.0
    assert sample(metrics, "gate_info", gate="cov", unit="percent", kind="coverage", title="Line coverage") == 1.0
    assert sample(metrics, "gate_info", gate="quick", unit="number") == 1.0  # a command's value is its exit code
    assert sample(metrics, "gate_value", gate="cov") == pytest.approx(0.714286, abs=1e-6)  # base units


@pytest.mark.parametrize("url", ["qg.example.com", "ftp://qg.example.com", "https://", "https://x/?a=1"])
def test_external_url_must_be_an_absolute_http_url(tmp_path, url):
    out = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(_tracker(tmp_path)),
                          "--web.external-url", url], capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "--web.external-url" in out.stderr and "Traceback" not in out.stderr
