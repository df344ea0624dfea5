"""JUnit XML reports, validated against the strict Ant/Jenkins JUnit schema with libxml2 (lxml)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from lxml import etree

from exporter.config.model import parse_config
from exporter.report.ci import junit_xml
from exporter.tracker.importer import import_tracker_file
from tracker_support import JUNIT_XSD, TRACKERS, small_status, status_from_config


@pytest.fixture(scope="module")
def schema():
    return etree.XMLSchema(etree.parse(str(JUNIT_XSD)))


def assert_valid(schema, text: str) -> etree._Element:
    doc = etree.fromstring(text.encode("utf-8"))
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)
    return doc


def test_hand_made_status_is_valid_junit(schema):
    text = junit_xml(small_status())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>')
    assert_valid(schema, text)
    root = ET.fromstring(text)
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["demo.core", "demo.docs"]
    assert [(s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) for s in suites] == [
        ("3", "1", "1", "0"), ("2", "1", "0", "1")]
    assert suites[0].get("timestamp") == "2025-11-12T20:20:00"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert list(cases) == ["health", "coverage", "smoke", "docs-reviewed", "sla"]
    assert cases["health"].get("classname") == "core.api" and list(cases["health"]) == []
    assert cases["health"].get("time") == "0.012"
    failure = cases["coverage"].find("failure")
    assert failure.get("type") == "fail" and failure.get("message") == "value 0.71 does not meet >= 85%"
    assert "expect: >= 85%" in failure.text and "value: 71 %" in failure.text  # human units; the JSON report keeps 0.71
    error = cases["smoke"].find("error")
    assert error.get("type") == "error" and error.get("message") == "command not found: ./smoke.sh | tail"
    assert cases["sla"].find("skipped") is not None
    assert cases["docs-reviewed"].find("failure") is not None


def test_seed_status_with_every_outcome_is_valid(schema):
    config = parse_config(import_tracker_file(str(TRACKERS / "seed.md")).yaml_text, "seed.yml")
    ids = [g.id for g in config.gates]
    outcomes = {}
    for i, gate_id in enumerate(ids):
        word = ("pass", "fail", "error", "pending")[i % 4]
        outcomes[gate_id] = {"status": word, "value": 0.5 if word in ("pass", "fail") else None,
                             "message": "" if word == "pass" else f"<{word}> & \"quoted\" \x1b[31m"}
    text = junit_xml(status_from_config(config, outcomes))
    doc = assert_valid(schema, text)
    assert len(doc.findall(".//testcase")) == 81
    assert len(doc.findall("testsuite")) == 8
    assert len(doc.findall(".//failure")) == len([i for i in range(81) if i % 4 == 1])


def test_several_trackers_and_an_empty_one(schema):
    empty = {**small_status(), "tracker": "empty", "gates": [], "phase_status": [], "step_completion": []}
    text = junit_xml({"trackers": [small_status(), empty]})
    doc = assert_valid(schema, text)
    assert [s.get("id") for s in doc.findall("testsuite")] == ["0", "1"]
    assert_valid(schema, junit_xml(empty))


def test_the_schema_is_strict(schema):
    """A control: the schema really rejects what strict consumers reject."""
    good = junit_xml(small_status())
    for broken in (good.replace("<system-err />", ""),  # required element missing
                   good.replace('timestamp="2025-11-12T20:20:00"', 'timestamp="2025-11-12T20:20:00Z"'),
                   good.replace('classname="core.api"', "")):
        doc = etree.fromstring(broken.encode("utf-8"))
        assert not schema.validate(doc)
