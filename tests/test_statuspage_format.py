"""Status page view models: values in human units, uptime strips, filters (pure functions)."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from exporter.config.model import parse_config
from exporter.web.filters import BadRequest, Filters, parse_filters
from exporter.web.humanize import ago, checks, summary
from exporter.web.statuspage import make_environment
from exporter.web.views import uptime_strip

CONFIG = """
tracker: fmt
phases:
  - id: p
    steps:
      - id: s
        gates:
          - {id: cov, coverage: {path: cov.json}, expect: ">= 85%"}
          - {id: cov-ratio, coverage: {path: cov.json}, expect: ">= 0.8"}
          - {id: api, http: {url: "http://127.0.0.1:1/"}, expect: ["status == 200", "response_time < 500ms"]}
          - {id: api-bare, http: {url: "http://127.0.0.1:1/"}, expect: "response_time < 0.5"}
          - {id: api-plain, http: {url: "http://127.0.0.1:1/"}}
          - {id: fresh, file: {path: x}, expect: "age < 1d"}
          - {id: big, file: {path: x}, expect: "size < 1048576"}
          - {id: cmd, command: {argv: ["true"]}}
          - {id: cmd-val, command: {argv: ["true"], value_regex: "(\\\\d+)"}, expect: "> 2"}
          - {id: tests, junit: {path: "*.xml"}}
          - {id: up, uptime: {gate: api}, expect: "> 99.9%"}
          - {id: tcp, tcp: {address: "127.0.0.1:1"}}
          - {id: q, promql: {query: up, url: "http://127.0.0.1:1"}, expect: "== true"}
"""


@pytest.fixture(scope="module")
def gates():
    return parse_config(CONFIG).by_id


@pytest.mark.parametrize("gate, measurements, expected", [
    ("cov", {"value": 0.85}, ["coverage 85 % is at least 85 %"]),
    ("cov", {"value": 0.8512}, ["coverage 85.1 % is at least 85 %"]),
    ("cov-ratio", {"value": 0.7234}, ["coverage 72.3 % is below 80 %"]),
    ("api", {"status": 200, "response_time": 0.212, "value": 0.212},
     ["status 200 is 200", "response_time 212 ms is below 500 ms"]),
    ("api", {"status": 503, "response_time": 1.5},
     ["status 503 is not 200", "response_time 1500 ms is not below 500 ms"]),
    ("api-bare", {"response_time": 0.0421}, ["response_time 42.1 ms is below 500 ms"]),
    ("fresh", {"age": 3600.0}, ["age 60 min is below 1 d"]),
    ("fresh", {"age": 43200.0}, ["age 12 h is below 1 d"]),
    ("fresh", {"age": 129600.0}, ["age 1.5 d is not below 1 d"]),
    ("big", {"size": 2.5 * 1024 * 1024}, ["size 2.5 MiB is not below 1 MiB"]),
    ("cmd-val", {"value": 3.0}, ["value 3 is above 2"]),
    ("up", {"value": 0.99951}, ["uptime 99.95 % is above 99.9 %"]),
    ("up", {"value": 0.99}, ["uptime 99 % is not above 99.9 %"]),
    ("q", {"value": 1.0}, ["value 1 is 1"]),
    ("cov", {}, ["expects >= 85 %"]),
])
def test_checks_show_value_and_expectation_in_human_units(gates, gate, measurements, expected):
    assert [c.text for c in checks(gates[gate], measurements)] == expected


def test_checks_say_whether_each_condition_holds(gates):
    got = checks(gates["api"], {"status": 200, "response_time": 0.9})
    assert [c.met for c in got] == [True, False]
    assert [c.met for c in checks(gates["api"], {})] == [None, None]


@pytest.mark.parametrize("gate, measurements, expected", [
    ("api-plain", {"status": 204, "response_time": 0.0123, "value": 0.0123}, "HTTP 204 in 12.3 ms"),
    ("cmd", {"exit_code": 1, "duration": 0.01, "value": 1}, "exit code 1"),
    ("tests", {"tests": 40, "failures": 2, "errors": 0, "skipped": 1, "value": 0.95}, "40 tests, 2 failures, 0 errors"),
    ("tcp", {"connect_time": 0.0004, "value": 0.0004}, "connected in 0.4 ms"),
    ("fresh", {"age": 7200.0, "size": 2048, "value": 7200.0}, "2 KiB, modified 2 h ago"),
    ("api-plain", {}, "—"),
])
def test_summary_of_gates_judged_by_their_default(gates, gate, measurements, expected):
    assert summary(gates[gate], measurements) == expected


def test_uptime_strip_sums_buckets_into_cells_ending_now():
    day0 = 40 * 86400
    now = day0 + 5 * 3600 + 120.0  # 05:02 UTC
    buckets = {
        day0 + 5 * 3600: [3, 4],               # 5-minute bucket in the current hour
        day0 + 5 * 3600 + 300: [1, 1],         # same hour
        day0 + 4 * 3600: [12, 12],             # previous hour
        day0 - 86400 + 4 * 3600: [10, 12],     # 25 hours ago: outside the 24-hour strip
        day0 - 8 * 86400: [100, 100],          # a daily bucket 8 days ago
        day0 - 30 * 86400: [5, 5],             # older than 30 days
    }
    day = uptime_strip(buckets, now, 3600, 24, "Last 24 hours")
    assert len(day.cells) == 24
    assert (day.cells[-1].passed, day.cells[-1].total) == (4, 5)
    assert (day.cells[-2].passed, day.cells[-2].total) == (12, 12)
    assert day.cells[-1].start == day0 + 5 * 3600
    assert (day.passed, day.total) == (16, 17)
    assert [c.level for c in day.cells[-2:]] == ["full", "mid"]
    assert day.cells[0].level == "none"
    assert day.summary == "Last 24 hours: 16 of 17 evaluations passed (94.1 %); 1 hour with failures."
    assert day.cells[-1].title == "1970-02-10 05:00–06:00 UTC: 4 of 5 passed (80.0 %)"
    assert day.cells[0].title == "1970-02-09 06:00–07:00 UTC: no evaluations"

    month = uptime_strip(buckets, now, 86400, 30, "Last 30 days")
    assert len(month.cells) == 30
    assert (month.cells[-1].passed, month.cells[-1].total) == (16, 17)
    assert (month.cells[-2].passed, month.cells[-2].total) == (10, 12)
    assert (month.cells[-9].passed, month.cells[-9].total) == (100, 100)
    assert month.cells[-9].title == "1970-02-02 UTC: 100 of 100 passed (100.0 %)"
    assert (month.passed, month.total) == (126, 129)


def test_uptime_strip_without_data_says_so():
    strip = uptime_strip({}, 1e9, 86400, 30, "Last 30 days")
    assert strip.ratio_text == "no data"
    assert strip.summary == "Last 30 days: no evaluations."
    assert {c.level for c in strip.cells} == {"none"}


def test_filters_accept_known_words_repeated_or_comma_separated():
    f = parse_filters(MultiDict([("tier", "critical"), ("status", "fail,error"), ("status", "pending")]))
    assert f == Filters(frozenset({"critical"}), frozenset({"fail", "error", "pending"}))
    assert f.matches("critical", "fail") and not f.matches("important", "fail") and not f.matches("critical", "pass")
    assert f.describe() == "tier critical, status fail or error or pending"
    assert not parse_filters(MultiDict()).active


@pytest.mark.parametrize("query", [{"tier": "<script>alert(1)</script>"}, {"status": "passed"}, {"tier": "Critical"}])
def test_filters_refuse_unknown_words_without_repeating_them(query):
    with pytest.raises(BadRequest) as exc:
        parse_filters(MultiDict(query))
    assert next(iter(query.values())) not in str(exc.value)
    assert "use one of" in str(exc.value)


@pytest.mark.parametrize("age, expected", [(None, "never"), (2, "just now"), (42, "42 s ago"), (300, "5 min ago"),
                                           (3 * 3600, "3 h ago"), (3 * 86400, "3 d ago")])
def test_ago(age, expected):
    assert ago(None if age is None else 1000.0 - age, 1000.0) == expected


def test_large_counts_get_thousands_separators():
    strip = uptime_strip({86400 * 40: [5700, 5760]}, 86400 * 40 + 10, 86400, 30, "Last 30 days")
    assert strip.cells[-1].title == "1970-02-10 UTC: 5,700 of 5,760 passed (99.0 %)"
    assert strip.summary == "Last 30 days: 5,700 of 5,760 evaluations passed (99.0 %); 1 day with failures."
    assert 'title="1970-02-10 UTC: 5,700 of 5,760 passed (99.0 %)"' in strip.cells_html
    assert strip.cells[-1].level == "high"


@pytest.mark.parametrize("ratio, expected", [
    (2 / 3, "66.7 %"), (1 / 3, "33.3 %"), (199 / 200, "99.5 %"), (1999 / 2000, "99.9 %"), (1.0, "100 %"),
    (1e-6, "0.1 %"), (0.0, "0 %"), (0.2, "20 %"),
])
def test_completion_figures_have_one_decimal_and_never_claim_all_or_none(ratio, expected):
    assert make_environment().filters["pct"](ratio) == expected
