"""Claims about what CI makes (coverage, test results, timings, flakiness, security scans) -> push gates.

A long-running exporter never sees a CI runner's reports, so such a claim becomes a report gate
whose source is `push` (the contract's "Evidence pushed from CI"): CI sends the report with
`qualitygate push`, and the gate fails while no push younger than `max_age` counts. The rules
below only ever copy the document's own threshold into `expect`; a claim whose kind needs a
number the document does not state (a timing or a coverage "achieved") stays manual.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from exporter.tracker.infer import Expectation

DEFAULT_MAX_AGE = "1d"  # CI runs at least daily on an active branch; a stated cadence wins
DEFAULT_BRANCH = "main"  # pull requests are judged (delta) but never decide the gate
# The report file each kind's push line names: what the usual tools write.
REPORTS = {"coverage": "coverage.xml", "junit": "junit.xml", "sarif": "results.sarif", "json_file": "report.json"}

_SECURITY = re.compile(r"\bsecurity\s+(?:scan\w*|audit\w*)|\bvulnerabilit(?:y|ies)\b|\bcves?\b|\bsast\b|"
                       r"\bdependency\s+(?:scan\w*|audit\w*)", re.I)
_CLEAN_WORDS = {"clean", "passing", "pass", "passes", "passed", "green", "ok", "none", "zero", "nil"}
_COVERAGE = re.compile(r"\bcoverage\b", re.I)
# "API coverage", "Alert rule coverage: 100% of critical paths": coverage of something no coverage report measures.
_NOT_CODE = re.compile(r"\b(?:api|apis|alert\w*|monitoring|doc\w*|rules?|paths?|features?|requirements?|"
                       r"endpoints?|metrics?|dashboards?|sdks?)\b", re.I)
_TESTS = re.compile(r"\b(?:tests?|smoke|suites?|checks?)\b", re.I)
_PASSING = re.compile(r"\bpass(?:ing|es|ed)?\b", re.I)
_FAILURES = re.compile(r"\b(?:zero|no)\s+(?:\w+\s+)?(?:test\s+)?(?:failures|failing)\b", re.I)
_TIMING = re.compile(r"\bp\d{2}\b|\blatency\b|\bresponse(?:\s+time)?\b|\b(?:execution|build|startup|start-up|"
                     r"completion|load|run)\s*time\b|\bduration\b|\bperformance\b", re.I)
_VALIDATION = re.compile(r"\bschema\s+validation\b", re.I)
_FLAKY = re.compile(r"\bflak(?:y|iness)\b", re.I)
_CADENCE = (
    (re.compile(r"\bhourly\b", re.I), "1h"),
    (re.compile(r"\b(?:daily|nightly)\b", re.I), "1d"),
    (re.compile(r"\bweekly\b", re.I), "7d"),
)
_EVERY = re.compile(r"\bevery\s+(\d+)\s*(h|hours?|d|days?)\b", re.I)


@dataclass(frozen=True)
class PushGuess:
    """A push-sourced report gate for a claim: its kind, options and expect, and why."""

    kind: str  # coverage | junit | sarif | json_file
    spec: dict[str, Any]
    expect: tuple[str, ...]
    notes: tuple[str, ...] = ()
    json_key: bool = False  # json_file: json_path is `$.<gate id>`, set once ids are known

    @property
    def report(self) -> str:
        """The report file the push line names."""
        return REPORTS[self.kind]


def _cadence(text: str) -> tuple[str, str]:
    """max_age from a cadence the claim states, else the default (and a note saying which)."""
    if m := _EVERY.search(text):
        unit = m[2][0].lower()
        return f"{m[1]}{unit}", f"max_age {m[1]}{unit}: the claim's {m[0]!r}"
    for pattern, age in _CADENCE:
        if m := pattern.search(text):
            return age, f"max_age {age}: the claim's {m[0]!r}"
    return DEFAULT_MAX_AGE, (f"max_age {DEFAULT_MAX_AGE} is the importer's default (the document states no "
                             f"cadence): without a push from {DEFAULT_BRANCH} that young, the gate fails")


def _units(exp: Expectation) -> set[str]:
    return {re.sub(r"^[<>=!]+\s*[\d.]+", "", c) for c in exp.conditions}


def push_for(name: str, threshold: str, exp: Expectation) -> PushGuess | None:
    """The push gate a claim describes, or None (the claim stays as it is)."""
    text = f"{name}: {threshold}"
    first = re.split(r"[\s(,;:]+", threshold.strip().lower(), maxsplit=1)[0]
    max_age, age_note = _cadence(text)
    source = {"push": {"max_age": max_age, "branch": DEFAULT_BRANCH}}
    ops = {c.split()[0] for c in exp.conditions}
    units = _units(exp)
    if _SECURITY.search(name):
        level = "error" if re.search(r"\b(?:critical|high|errors?)\b", text, re.I) else \
            "note" if re.search(r"\bnotes?\b", text, re.I) else "warning"
        why = (f"level {level}: the claim names {level}-or-worse findings" if level != "warning"
               else "level warning (the kind's default): 'clean' read as no finding at warning or above")
        if exp.conditions and units == {""}:
            return PushGuess("sarif", {**source, "level": level}, exp.conditions, (why, age_note))
        if not exp.conditions and (first in _CLEAN_WORDS or (first == "true" and re.match(r"(?i)(zero|no)\b", name))):
            # == 0 is the kind's own default, written out so that a rendered tracker still states it.
            return PushGuess("sarif", {**source, "level": level}, ("== 0",),
                             (f"passes when the scan has no unsuppressed result at {level} or above", why, age_note))
        return None
    if _COVERAGE.search(name) and not _NOT_CODE.search(text) and exp.conditions and units == {"%"} \
            and ops <= {">", ">="}:
        metric = {"metric": "branch"} if re.search(r"\bbranch\b", name, re.I) else {}
        return PushGuess("coverage", {**source, **metric}, exp.conditions,
                         ("the report CI writes (Cobertura XML, LCOV, JaCoCo or coverage.py JSON)", age_note))
    if (_TIMING.search(name) or re.search(r"\bp\d{2}\b", threshold, re.I)) and exp.conditions \
            and units <= {"ms", "s", "m", "h", "d"} and "" not in units:
        return PushGuess("json_file", dict(source), exp.conditions,
                         ("the JSON report CI writes holds this number at json_path, in seconds (500ms is 0.5)",
                          age_note), json_key=True)
    if _FLAKY.search(name) and exp.conditions and units == {"%"}:
        return PushGuess("json_file", dict(source), exp.conditions,
                         ("the JSON report CI writes holds the flaky share at json_path, as a ratio (2% is 0.02)",
                          age_note), json_key=True)
    # "API schema validation: 100%": validators such as schemathesis write JUnit XML.
    if (_TESTS.search(name) or _VALIDATION.search(name)) and not _COVERAGE.search(name):
        if exp.conditions and units == {"%"} and ops <= {">", ">="}:  # "Integration tests: 100% passing"
            return PushGuess("junit", dict(source), exp.conditions,
                             ("value is the pass rate of the tests that ran", age_note))
        no_failure = ("passes when no test of the report failed or errored (failures == 0 is written out so that "
                      "a rendered tracker still states it)")
        if exp.conditions and all(re.fullmatch(r"(?:failures|errors) == 0", c) for c in exp.conditions):
            return PushGuess("junit", dict(source), exp.conditions, (no_failure, age_note))
        passing = _PASSING.search(text) is not None
        if not exp.conditions and ((passing and first in ("all", *_CLEAN_WORDS)) or
                                   (_FAILURES.search(name) and first in ("", "true", "yes", *_CLEAN_WORDS))):
            return PushGuess("junit", dict(source), ("failures == 0",), (no_failure, age_note))
    return None


def push_line(gate_id: str, report: str, tracker: str) -> str:
    """The CI command that feeds one push gate."""
    return f"qualitygate push {gate_id} {report} --url $QUALITYGATE_URL --tracker {tracker}"


def push_header(lines: list[str]) -> list[str]:
    """The config's opening comment on its push gates: how CI feeds them."""
    if not lines:
        return []
    return ["#", f"# {len(lines)} gates take reports pushed from CI and fail until one arrives. Uncomment",
            "# push_tokens_file below (one bearer token a line) and, in CI, set QUALITYGATE_URL and",
            "# QUALITYGATE_TOKEN_FILE, then run after the step that writes each report:",
            *[f"#   {line}" for line in lines],
            "# push_tokens_file: ci-push-tokens"]
