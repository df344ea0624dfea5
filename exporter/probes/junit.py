"""`junit` gates: JUnit XML reports (a glob; several files summed); passes when nothing failed.

Counting: every <testcase> counts once, as an error if it holds <error>, else a failure if it
holds <failure>, else skipped if it holds <skipped>, else passed. Counting test cases rather
than trusting <testsuite> attributes keeps nested suites (and tools that disagree about them)
right. A file without any <testcase> falls back to its top-level suites' tests/failures/errors/
skipped attributes.

value is the pass rate of the tests that ran: passed / (tests - skipped). A report in which no
test ran (none, or all skipped) is an error: there is no pass rate to judge.

Reports are scanned as they are read (files.scan_xml): a 200 MB report costs no more memory than
a small one. `parse_report(spec, data, name)` (KIND.parse_report) judges one pushed report;
`combine` sums the reports of one CI run.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import BinaryIO

from exporter.config.fields import FilePath, opt
from exporter.probes import offload
from exporter.probes.base import Measurement, ProbeContext, ProbeError, ProbeKind
from exporter.probes.files import display_path, root_of, scan_xml
from exporter.probes.reading import open_regular
from exporter.probes.sources import ReportSource, measure, parse_bytes

MAX_FILES = 10_000


@dataclass(frozen=True, slots=True)
class JUnitSpec(ReportSource):
    """Options of a `junit` gate."""

    path: FilePath | None = opt(None, doc="A JUnit XML file or glob (`**` recurses), e.g. reports/*.xml.")


@dataclass
class Counts:
    """Test counts of one or more reports."""

    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0

    def add(self, other: Counts) -> None:
        """Add another report's counts to these."""
        self.tests += other.tests
        self.failures += other.failures
        self.errors += other.errors
        self.skipped += other.skipped


async def probe(spec: JUnitSpec, ctx: ProbeContext) -> Measurement:
    """Sum every matching report (or judge the fetched or pushed one); failures or errors fail the gate."""
    return await measure(spec, ctx, parse, read_files)


def judge(counts: Counts, shown: str, files: int = 1) -> Measurement:
    """The measurements of summed counts; no test that ran is a ProbeError."""
    ran = counts.tests - counts.skipped
    if ran <= 0:
        raise ProbeError(f"{shown}: no test ran "
                         f"({counts.tests} tests, {counts.skipped} skipped in {files} files)")
    passed = ran - counts.failures - counts.errors
    values = {"tests": float(counts.tests), "failures": float(counts.failures), "errors": float(counts.errors),
              "skipped": float(counts.skipped), "value": max(0.0, passed / ran)}
    if counts.failures or counts.errors:
        message = (f"{_plural(counts.failures, 'failure')}, {_plural(counts.errors, 'error')} "
                   f"in {_plural(counts.tests, 'test')}")
        return Measurement(values, ok=False, message=message)
    return Measurement(values)


def parse(spec: JUnitSpec, stream: BinaryIO, name: str) -> Measurement:
    """Judge one report read from a stream."""
    return judge(offload.run(count, stream, name), name)


def combine(parts: list[Measurement]) -> Measurement:
    """One CI run's reports (a suite split over parallel jobs) summed into one judgement."""
    total = Counts()
    for m in parts:
        total.add(Counts(*(int(m.values.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))))
    return judge(total, "run", len(parts))


def read_files(spec: JUnitSpec, shown: str, base_dir: str | None = None) -> Measurement:
    """Counts summed over every file matching the glob (in the report pool: globbing blocks too)."""
    assert spec.path is not None
    counts, files = read_reports(spec.path, shown, base_dir)
    return judge(counts, shown, files)


def read_reports(pattern: str, shown: str, base_dir: str | None = None) -> tuple[Counts, int]:
    """Counts summed over every file matching the glob, and the number of files."""
    if any(c in pattern for c in "*?["):
        files = sorted(p for p in glob.iglob(pattern, recursive=True) if os.path.isfile(p))
    else:
        files = [pattern]  # a plain path: a missing file says "no such file"
    if not files:
        raise ProbeError(f"{shown}: no files match")
    if len(files) > MAX_FILES:
        raise ProbeError(f"{shown}: {len(files)} files match, more than {MAX_FILES}")
    total = Counts()
    for path in files:
        name = display_path(path, base_dir)
        with open_regular(path, name) as fh:
            total.add(offload.run(count, fh, name))  # a large one in a worker process
    return total, len(files)


_KEYS = ("tests", "failures", "errors", "skipped")


def count(stream: BinaryIO, name: str) -> Counts:
    """The counts of one report, scanned element by element (nothing of the tree is kept)."""
    cases = Counts()
    suites = Counts()  # the fallback: attributes of the top-level suites
    root_counts = Counts()
    bad: list[str] = []  # a malformed count attribute matters only if the fallback is used
    saw_suite = False
    root = ""
    case_depth = 0
    verdict = ""

    def attr_counts(attrs: dict[str, str]) -> Counts:
        out = Counts()
        for key in _KEYS:
            try:
                setattr(out, key, _int(attrs.get(key), name))
            except ProbeError as exc:
                bad.append(str(exc))
        return out

    def start(tag: str, attrs: dict[str, str], depth: int) -> None:
        nonlocal root, case_depth, verdict, saw_suite
        if depth == 1:
            root = tag
            root_counts.add(attr_counts(attrs))
        elif depth == 2 and root == "testsuites" and tag == "testsuite":
            saw_suite = True
            suites.add(attr_counts(attrs))
        if tag == "testcase" and not case_depth:
            case_depth, verdict = depth, ""
            cases.tests += 1
        elif case_depth and depth == case_depth + 1 and tag in _RANK and _RANK[tag] > _RANK.get(verdict, 0):
            verdict = tag

    def end(tag: str, depth: int) -> None:
        nonlocal case_depth
        if depth == case_depth and tag == "testcase":
            case_depth = 0
            if verdict == "error":
                cases.errors += 1
            elif verdict == "failure":
                cases.failures += 1
            elif verdict == "skipped":
                cases.skipped += 1

    scan_xml(stream, name, root_of(name, start, ("testsuites", "testsuite"), "JUnit"), end)
    if cases.tests:
        return cases
    if bad:
        raise ProbeError(bad[0])
    return suites if saw_suite else root_counts


_RANK = {"skipped": 1, "failure": 2, "error": 3}


def _int(text: str | None, name: str) -> int:
    if text is None:
        return 0
    try:
        return int(float(text))
    except ValueError:
        raise ProbeError(f"{name}: {text!r} is not a count") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


KIND = ProbeKind("junit", JUnitSpec, probe, ("value", "tests", "failures", "errors", "skipped"),
                 doc="JUnit XML test reports show no failures or errors.",
                 parse_report=parse_bytes(parse), combine=combine)
