"""`coverage`, `junit` and `json_file` probes on real report files (tests/testdata/reports and tmp_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporter.engine.evaluate import evaluate
from exporter.probes import ProbeError
from exporter.probes.coverage import CoverageSpec
from exporter.probes.json_file import JSONFileSpec
from exporter.probes.junit import JUnitSpec
from probe_support import config_errors, make_ctx, parse_gate, run_probe

REPORTS = Path(__file__).parent / "testdata" / "reports"


def report(name: str) -> str:
    return str(REPORTS / name)


# --- coverage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, fmt, line, branch", [
    ("cobertura.xml", "cobertura", 0.85, 0.7),
    ("cobertura-rates-only.xml", "cobertura", 0.912, 0.5),
    ("jacoco.xml", "jacoco", 0.8, 0.75),
    ("lcov.info", "lcov", 23 / 30, 0.5),
    ("coverage.json", "coverage.py", 0.9, 0.75),
])
async def test_coverage_formats_explicit_and_auto(name: str, fmt: str, line: float, branch: float):
    for format_ in (fmt, "auto"):
        m = await run_probe("coverage", CoverageSpec(path=report(name), format=format_, metric="line"))
        assert m.ok and m.value == pytest.approx(line), (name, format_)
        m = await run_probe("coverage", CoverageSpec(path=report(name), format=format_, metric="branch"))
        assert m.value == pytest.approx(branch), (name, format_)


async def test_coverage_missing_file_is_an_error_named_relative_to_the_config(tmp_path: Path):
    with pytest.raises(ProbeError, match=r"^coverage\.xml: no such file$"):
        await run_probe("coverage", CoverageSpec(path=str(tmp_path / "coverage.xml")), make_ctx(base_dir=str(tmp_path)))
    with pytest.raises(ProbeError, match=f"^{tmp_path}/coverage.xml: no such file$"):
        await run_probe("coverage", CoverageSpec(path=str(tmp_path / "coverage.xml")), make_ctx(base_dir="/nowhere"))


async def test_coverage_without_branch_data_is_an_error_not_zero():
    m = await run_probe("coverage", CoverageSpec(path=report("cobertura-no-branches.xml")))
    assert m.value == pytest.approx(0.9)
    with pytest.raises(ProbeError, match="the report counts no branches"):
        await run_probe("coverage", CoverageSpec(path=report("cobertura-no-branches.xml"), metric="branch"))


@pytest.mark.parametrize("content, fmt, message", [
    (b"<coverage lines-valid='10'", "auto", "not valid XML"),
    (b"hello world\n", "auto", "not a coverage report this exporter knows"),
    (b"<testsuite tests='1'/>", "auto", "neither Cobertura"),
    (b"<report/>", "cobertura", "not a Cobertura report"),
    (b"{not json", "auto", "not valid JSON"),
    (b'{"meta": {}}', "coverage.py", "no totals"),
    (b"SF:x\nDA:1,1\n", "lcov", "no end_of_record"),
    (b"<coverage lines-valid='0' lines-covered='0'/>", "auto", "the report counts no lines"),
    (b"<coverage lines-valid='ten' lines-covered='1'/>", "auto", "'ten' is not a number"),
], ids=lambda v: v if isinstance(v, str) and " " not in v else None)
async def test_coverage_unparsable_reports_are_errors(tmp_path: Path, content: bytes, fmt: str, message: str):
    path = tmp_path / "report"
    path.write_bytes(content)
    with pytest.raises(ProbeError, match=message):
        await run_probe("coverage", CoverageSpec(path=str(path), format=fmt), make_ctx(base_dir=str(tmp_path)))


async def test_xml_entity_declarations_are_refused(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text("0.99")
    xxe = tmp_path / "xxe.xml"
    xxe.write_text(f'<?xml version="1.0"?>\n<!DOCTYPE coverage [<!ENTITY x SYSTEM "file://{secret}">]>\n'
                   '<coverage line-rate="&x;"/>')
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<!DOCTYPE c [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                    '<coverage line-rate="&b;"/>')
    for path in (xxe, bomb):
        with pytest.raises(ProbeError, match="DOCTYPE internal subset"):
            await run_probe("coverage", CoverageSpec(path=str(path)))


async def test_lcov_record_without_summary_lines_is_counted_from_da_and_brda(tmp_path: Path):
    path = tmp_path / "lcov.info"
    path.write_text("SF:a.c\nDA:1,3\nDA:2,0\nDA:3,1\nDA:4,0\nBRDA:1,0,0,2\nBRDA:1,0,1,-\nend_of_record\n")
    assert (await run_probe("coverage", CoverageSpec(path=str(path)))).value == 0.5
    assert (await run_probe("coverage", CoverageSpec(path=str(path), metric="branch"))).value == 0.5


async def test_coverage_gate_from_config_with_expect(tmp_path: Path):
    shutil.copy(report("cobertura.xml"), tmp_path / "coverage.xml")
    gate = parse_gate(tmp_path, """
        - id: cov
          coverage: {path: coverage.xml, format: cobertura, metric: line}
          expect: ">= 90%"
    """)
    assert gate.spec.path == str(tmp_path / "coverage.xml")
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "fail" and result.message == "coverage 85 % is below 90 %"
    (tmp_path / "coverage.xml").unlink()
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "error" and result.message == "coverage.xml: no such file"


def test_coverage_config_errors(tmp_path: Path):
    key = "phases[0].steps[0].gates[0]"
    assert config_errors(tmp_path, """
        - id: cov
          coverage: {path: c.xml, format: xml, metric: lines}
          expect: ">= 80%"
    """) == [f"{key}.coverage.format: must be one of auto, cobertura, lcov, jacoco, coverage.py, got 'xml'",
             f"{key}.coverage.metric: must be one of line, branch, got 'lines'"]
    assert config_errors(tmp_path, "- id: cov\n  coverage: {path: c.xml}") == [
        f"{key}.expect: a coverage gate needs an expect condition (it has no default pass)"]


# --- junit ------------------------------------------------------------------------------------


async def test_junit_glob_sums_files():
    m = await run_probe("junit", JUnitSpec(path=report("junit/*.xml")))
    assert m.values == {"tests": 8, "failures": 1, "errors": 1, "skipped": 1, "value": pytest.approx(5 / 7)}
    assert not m.ok
    assert m.message == "1 failure, 1 error in 8 tests"


async def test_junit_single_file_and_recursive_glob(tmp_path: Path):
    m = await run_probe("junit", JUnitSpec(path=report("junit/unit.xml")))
    assert m.values["tests"] == 5 and m.values["failures"] == 1 and m.values["value"] == 0.75
    m = await run_probe("junit", JUnitSpec(path=str(REPORTS / "**" / "integration.xml")))
    assert m.values["tests"] == 3 and m.values["errors"] == 1


async def test_junit_all_passing_passes_with_rate_one(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "TEST-one.xml").write_text(
        '<testsuite name="one" tests="2"><testcase name="x"/><testcase name="y"><skipped/></testcase></testsuite>')
    (tmp_path / "TEST-nested.xml").write_text(
        '<testsuites><testsuite name="outer"><testsuite name="inner">'
        '<testcase name="p"/><testcase name="q"/></testsuite></testsuite></testsuites>')
    m = await run_probe("junit", JUnitSpec(path=str(tmp_path / "**" / "TEST-*.xml")))
    assert m.ok and m.message == ""
    assert m.values == {"tests": 4, "failures": 0, "errors": 0, "skipped": 1, "value": 1.0}


async def test_junit_counts_from_attributes_when_there_are_no_testcases(tmp_path: Path):
    (tmp_path / "summary.xml").write_text(
        '<testsuites><testsuite tests="10" failures="2" errors="0" skipped="0"/>'
        '<testsuite tests="5" failures="0" errors="0" skipped="1"/></testsuites>')
    m = await run_probe("junit", JUnitSpec(path=str(tmp_path / "summary.xml")))
    assert m.values == {"tests": 15, "failures": 2, "errors": 0, "skipped": 1, "value": pytest.approx(12 / 14)}
    assert m.message == "2 failures, 0 errors in 15 tests"


async def test_junit_errors(tmp_path: Path):
    ctx = make_ctx(base_dir=str(tmp_path))
    with pytest.raises(ProbeError, match=r"^reports/\*\.xml: no files match$"):
        await run_probe("junit", JUnitSpec(path=str(tmp_path / "reports" / "*.xml")), ctx)
    with pytest.raises(ProbeError, match=r"^junit\.xml: no such file$"):
        await run_probe("junit", JUnitSpec(path=str(tmp_path / "junit.xml")), ctx)
    (tmp_path / "skipped.xml").write_text('<testsuite tests="1"><testcase name="x"><skipped/></testcase></testsuite>')
    with pytest.raises(ProbeError, match=r"^skipped.xml: no test ran \(1 tests, 1 skipped in 1 files\)$"):
        await run_probe("junit", JUnitSpec(path=str(tmp_path / "skipped.xml")), ctx)
    (tmp_path / "cov.xml").write_text("<coverage/>")
    with pytest.raises(ProbeError, match=r"^cov.xml: not a JUnit report \(root is <coverage>\)$"):
        await run_probe("junit", JUnitSpec(path=str(tmp_path / "cov.xml")), ctx)
    (tmp_path / "broken.xml").write_text("<testsuite><testcase>")
    with pytest.raises(ProbeError, match=r"^broken\.xml: not valid XML"):
        await run_probe("junit", JUnitSpec(path=str(tmp_path / "broken.xml")), ctx)


async def test_junit_gate_from_config(tmp_path: Path):
    shutil.copytree(REPORTS / "junit", tmp_path / "results")
    gate = parse_gate(tmp_path, """
        - id: tests
          junit: {path: "results/*.xml"}
          expect: "failures <= 1"
    """)
    assert gate.spec.path == str(tmp_path / "results" / "*.xml")
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "fail" and result.message == "1 failure, 1 error in 8 tests"
    assert config_errors(tmp_path, """
        - id: tests
          junit: {path: ""}
    """) == ["phases[0].steps[0].gates[0].junit.path: must not be empty"]


# --- json_file --------------------------------------------------------------------------------


@pytest.mark.parametrize("path, want", [
    ("$.flaky_rate", 0.012),
    ("suites[0].p95_seconds", 0.42),
    ("$.suites[0].green", 1.0),
    ("$['suites'][-1]['p95_seconds']", 0.42),
])
async def test_json_file_values(path: str, want: float):
    m = await run_probe("json_file", JSONFileSpec(path=report("data.json"), json_path=path))
    assert m.ok and m.value == want


async def test_json_file_errors(tmp_path: Path):
    ctx = make_ctx(base_dir=str(REPORTS))
    with pytest.raises(ProbeError, match=r"^data.json: json_path \$\.suites\[1\]\.name: \$\.suites\[1\] not found$"):
        await run_probe("json_file", JSONFileSpec(path=report("data.json"), json_path="$.suites[1].name"), ctx)
    with pytest.raises(ProbeError, match=r"^data.json: \$\.owner is 'team-b', not a number$"):
        await run_probe("json_file", JSONFileSpec(path=report("data.json"), json_path="$.owner"), ctx)
    with pytest.raises(ProbeError, match=r"^data.json: \$\.pending is null, not a number$"):
        await run_probe("json_file", JSONFileSpec(path=report("data.json"), json_path="$.pending"), ctx)
    with pytest.raises(ProbeError, match=r"^data.json: \$\.suites is an array, not a number$"):
        await run_probe("json_file", JSONFileSpec(path=report("data.json"), json_path="$.suites"), ctx)
    with pytest.raises(ProbeError, match=r"^missing\.json: no such file$"):
        await run_probe("json_file", JSONFileSpec(path=report("missing.json"), json_path="$.x"), ctx)
    (tmp_path / "bad.json").write_text("{'single': 'quotes'}")
    with pytest.raises(ProbeError, match=r"bad\.json: not valid JSON"):
        await run_probe("json_file", JSONFileSpec(path=str(tmp_path / "bad.json"), json_path="$.x"), ctx)


async def test_json_file_gate_from_config(tmp_path: Path):
    shutil.copy(report("data.json"), tmp_path / "metrics.json")
    gate = parse_gate(tmp_path, """
        - id: flaky
          json_file: {path: metrics.json, json_path: "$.flaky_rate"}
          expect: "< 2%"
    """)
    result = await evaluate(gate, make_ctx(base_dir=str(tmp_path)))
    assert result.outcome == "pass" and result.value == 0.012
    key = "phases[0].steps[0].gates[0]"
    assert config_errors(tmp_path, """
        - id: flaky
          json_file: {path: metrics.json, json_path: "$..rate"}
          expect: "< 2%"
    """) == [f"{key}.json_file.json_path: invalid json_path '$..rate': wildcards and '..' are not supported "
             "(a json_path must select exactly one value)"]
    assert config_errors(tmp_path, """
        - id: flaky
          json_file: {path: metrics.json}
          expect: "< 2%"
    """) == [f"{key}.json_file.json_path: missing required key"]


# --- the json_path subset ---------------------------------------------------------------------


def test_json_path_subset():
    from exporter.probes import jsonpath

    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "odd key": {"x.y": 3}, "n": 4}
    assert jsonpath.parse("$.a.b[0].c") == ("a", "b", 0, "c")
    assert jsonpath.parse("a.b[-1].c") == ("a", "b", -1, "c")
    assert jsonpath.number(doc, "$.a.b[1].c") == 2
    assert jsonpath.number(doc, "a.b[-1].c") == 2
    assert jsonpath.number(doc, "$['odd key'][\"x.y\"]") == 3
    assert jsonpath.number(doc, "n") == 4
    assert jsonpath.number(7, "$") == 7
    with pytest.raises(KeyError, match=r"\$\.a\.b\[2\]"):
        jsonpath.number(doc, "$.a.b[2].c")
    with pytest.raises(ValueError, match=r"\$\.a is an object, not a number"):
        jsonpath.number(doc, "$.a")
    for bad in ("", "$.a[*].c", "$..c", "$.a.*", "$.a[1:2]", "$[?(@.c)]", "$.a b", "$.", "$a"):
        with pytest.raises(ValueError, match="invalid json_path"):
            jsonpath.check(bad)


# --- memory does not grow with the report ------------------------------------------------------


def test_large_reports_are_parsed_in_bounded_memory(tmp_path: Path):
    from bench.report_memory import measure, write_cobertura, write_junit

    write_junit(tmp_path / "junit.xml", 40_000_000)
    write_cobertura(tmp_path / "coverage.xml", 40_000_000)
    idle = measure("idle", "junit", tmp_path / "junit.xml")[0]
    rss, _, tests = measure("stream", "junit", tmp_path / "junit.xml")
    assert int(tests) > 400_000
    assert rss - idle < 20, f"peak RSS grew {rss - idle} MiB for a 40 MB report"  # the whole tree takes ~300 MiB
    rss, _, ratio = measure("stream", "coverage", tmp_path / "coverage.xml")
    assert float(ratio) == 0.87 and rss - idle < 20
