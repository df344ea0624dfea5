"""Markdown (PR comment) and JSON reports, files, $GITHUB_STEP_SUMMARY, and `qualitygate check` wiring."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

from lxml import etree

from exporter.report import ci as reports
from exporter.report.ci import json_report, markdown_table, write_reports
from tracker_support import JUNIT_XSD, small_status


def test_markdown_table():
    md = markdown_table(small_status())
    lines = md.splitlines()
    assert lines[0] == "### ❌ Quality gates: Demo & Co: 1 of 5 passed (20%)"
    assert "| critical | 1 | 0 | 1 | 0 | 2 |" in md
    rows = [line for line in lines if line.startswith("| ") and "`" in line]
    # Failures first, then errors, then pending; the passing gate is folded away.
    assert [r.split("`")[1] for r in rows] == ["coverage", "docs-reviewed", "smoke", "sla", "health"]
    assert "<details><summary>1 passing gates</summary>" in md
    smoke = next(r for r in rows if "`smoke`" in r)
    assert "./smoke.sh \\| tail" in smoke  # a pipe in a message cannot break the table
    assert "&lt;script>" in smoke and "<script>" not in md
    assert all(len(re.findall(r"(?<!\\)\|", r)) == 8 for r in rows)  # seven cells per row


def test_markdown_percentage_never_rounds_up_to_100():  # and has one decimal: 2 of 3 is 66.7%
    status = small_status()
    gate = status["gates"][0]
    status["gates"] = [dict(gate, id=f"g{i}", status="pass") for i in range(199)]
    status["gates"].append(dict(gate, id="last", status="fail"))
    assert markdown_table(status).startswith("### ❌ Quality gates: Demo & Co: 199 of 200 passed (99.5%)")


def test_markdown_all_passing_and_truncation(monkeypatch):
    status = small_status()
    for g in status["gates"]:
        g["status"] = "pass"
    assert markdown_table(status).startswith("### ✅ Quality gates: Demo & Co: 5 of 5 passed (100%)")
    monkeypatch.setattr(reports, "MAX_ROWS", 2)
    status = small_status()
    md = markdown_table(status)
    assert "…and 2 more gates not passing" in md


def test_json_report_is_the_status_document():
    status = small_status()
    assert json.loads(json_report(status)) == status


def test_write_reports_and_step_summary(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    out = tmp_path / "deep" / "dir"
    written = write_reports(small_status(), junit_path=str(out / "junit.xml"), markdown_path=str(out / "gates.md"),
                            json_path=str(out / "status.json"), environ=env)
    assert written == [str(out / "junit.xml"), str(out / "gates.md"), str(out / "status.json"), str(summary)]
    assert json.loads((out / "status.json").read_text(encoding="utf-8"))["tracker"] == "demo"
    md = (out / "gates.md").read_text(encoding="utf-8")
    assert summary.read_text(encoding="utf-8") == "earlier step\n" + md + "\n"
    write_reports(small_status(), environ=env)  # no files asked for: the summary is still appended
    assert summary.read_text(encoding="utf-8").count("### ❌ Quality gates") == 2
    assert sorted(os.listdir(out)) == ["gates.md", "junit.xml", "status.json"]  # no temp files left


def test_step_summary_failure_does_not_fail_the_run(tmp_path, caplog):
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing-dir" / "summary.md")}
    assert write_reports(small_status(), json_path=str(tmp_path / "s.json"), environ=env) == [str(tmp_path / "s.json")]
    assert "cannot append to GITHUB_STEP_SUMMARY" in caplog.text


def test_no_step_summary_without_the_variable(tmp_path):
    assert write_reports(small_status(), environ={}) == []


def test_qualitygate_check_writes_every_report(tmp_path):
    """The CLI's --junit-xml/--markdown/--json and GITHUB_STEP_SUMMARY, end to end in a subprocess."""
    (tmp_path / "present.txt").write_text("x", encoding="utf-8")
    config = tmp_path / "gates.yml"
    config.write_text(textwrap.dedent("""\
        tracker: ci-demo
        title: CI demo
        phases:
          - id: build
            steps:
              - id: artifacts
                gates:
                  - id: present
                    tier: critical
                    file: {path: present.txt}
                  - id: missing
                    tier: important
                    file: {path: missing.txt}
        """), encoding="utf-8")
    summary = tmp_path / "summary.md"
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    proc = subprocess.run([sys.executable, "-m", "exporter", "check", "--config.file", str(config),
                           "--junit-xml", str(tmp_path / "junit.xml"), "--markdown", str(tmp_path / "pr.md"),
                           "--json", str(tmp_path / "status.json")], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a gate failed
    schema = etree.XMLSchema(etree.parse(str(JUNIT_XSD)))
    doc = etree.parse(str(tmp_path / "junit.xml"))
    assert schema.validate(doc), schema.error_log
    assert [c.get("name") for c in doc.iter("testcase")] == ["present", "missing"]
    assert doc.find(".//testcase[@name='missing']/failure") is not None
    status = json.loads((tmp_path / "status.json").read_text(encoding="utf-8"))
    assert [g["status"] for g in status["gates"]] == ["pass", "fail"]
    md = (tmp_path / "pr.md").read_text(encoding="utf-8")
    assert "1 of 2 passed" in md and "`missing`" in md
    assert summary.read_text(encoding="utf-8") == md + "\n"
